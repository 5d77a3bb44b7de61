package main

import (
	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/postgres"
)

// drivers are the backends this binary can talk to. A new backend is one
// folder under plugins/ and one line here.
var drivers = []plugins.Driver{
	postgres.Driver{},
}
