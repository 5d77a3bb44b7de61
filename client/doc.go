// Package client is the Go client for credbroker that workloads and the
// credbroker CLI use. It attaches an identity token from a [TokenSource] to
// every call; token files are re-read on each call, so a rotated Kubernetes
// service-account token is picked up without a restart. Calls use the
// Connect protocol with the binary protobuf codec, the cheapest for both
// sides; the server accepts Connect JSON and gRPC as well.
package client
