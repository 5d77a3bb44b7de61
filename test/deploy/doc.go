// Package deploy tests what ships beside the binary: the Helm chart
// (deploy/helm/credbroker), the systemd unit (deploy/systemd) and the
// Dockerfile. The chart is rendered with the pinned helm binary that `make
// test` builds into .bin/, every object is decoded strictly into the
// Kubernetes API types (an unknown field is an error), and the broker config
// it renders is checked with `credbroker config check`. The Kubernetes
// modules are imported here only, so nothing else compiles them.
package deploy
