package main

import (
	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/mysql"
	"github.com/credbroker/credbroker/plugins/postgres"
	"github.com/credbroker/credbroker/plugins/rabbitmq"
	"github.com/credbroker/credbroker/plugins/redis"
)

// drivers are the backends this binary can talk to. A new backend is one
// folder under plugins/ and one line here.
var drivers = []plugins.Driver{
	mysql.Driver{},
	postgres.Driver{},
	rabbitmq.Driver{},
	redis.Driver{},
}
