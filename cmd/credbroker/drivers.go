package main

import (
	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/mqtt"
	"github.com/credbroker/credbroker/plugins/mysql"
	"github.com/credbroker/credbroker/plugins/postgres"
	"github.com/credbroker/credbroker/plugins/rabbitmq"
	"github.com/credbroker/credbroker/plugins/redis"
)

// drivers are the backends this binary can talk to. A new backend is one
// folder under plugins/ and one line here: what `connect` opens and what
// `dev` demonstrates come from each driver's plugins.Metadata.
var drivers = []plugins.Driver{
	mqtt.New(),
	mysql.New(),
	postgres.New(),
	rabbitmq.New(),
	redis.New(),
}

// metadata returns what the driver called name declares about itself, and
// false when this binary has no such driver.
func metadata(name string) (plugins.Metadata, bool) {
	for _, d := range drivers {
		if d.Name() != name {
			continue
		}
		if desc, ok := d.(plugins.Describer); ok {
			return desc.Describe(), true
		}
		return plugins.Metadata{}, true
	}
	return plugins.Metadata{}, false
}
