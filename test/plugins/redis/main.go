// Command redis is credbroker's in-tree Redis backend as a separate
// program, unchanged: the tests of plugins/external run the conformance
// suite against it out of process, next to the in-process run.
package main

import (
	"github.com/credbroker/credbroker/plugins/redis"
	"github.com/credbroker/credbroker/plugins/sdk"
)

func main() { sdk.Serve(redis.New()) }
