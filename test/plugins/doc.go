// Package plugins holds small backend programs that the tests of
// plugins/external and plugins/sdk build and run as separate programs:
//
//   - probe: an in-memory backend that writes its environment to a file and
//     fails on demand, to prove what a program sees and how its errors
//     travel;
//   - redis: the in-tree Redis backend as a program, sdk.Serve(redis.New()),
//     which runs the conformance suite out of process;
//   - wrongproto: a program that answers the handshake with a protocol
//     version no broker speaks.
package plugins
