// Package plugins holds small backend programs that the tests of
// plugins/external and plugins/sdk build and run as separate programs:
//
//   - probe: an in-memory backend that writes its environment to a file and
//     fails on demand, to prove what a program sees and how its errors
//     travel;
//   - redis: the in-tree Redis backend as a program, sdk.Serve(redis.New()),
//     which runs the conformance suite out of process;
//   - isolation: plays the broker, then a sibling process of the same
//     user, to check that a program keeps its environment and its socket
//     to the broker;
//   - grpconly: a program written without the SDK that serves gRPC over
//     HTTP/2 only, and with -protocol N answers the handshake with a
//     version no broker speaks.
package plugins
