package main

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/credbroker/credbroker/plugins"
)

// devBackend is an optional demo backend `credbroker dev` adds when its
// service answers on this machine.
type devBackend struct {
	name  string // plugin name, also the demo role's suffix
	probe func(ctx context.Context) error
	env   map[string]string // secret references the dev config points at
	yaml  string            // backends: and roles: entries, indented as list items
	try   string            // a line for the banner
}

// devBackends returns the demo backends whose services are reachable, each
// prepared (demo database, vhost) and ready to be written into the config.
// One that does not answer is skipped with a note on stderr.
func devBackends(ctx context.Context, note func(string)) []devBackend {
	redisAddr := envOr("CREDBROKER_DEV_REDIS_ADDR", "127.0.0.1:6379")
	mysqlDSN := envOr("CREDBROKER_DEV_MYSQL_DSN", "root@tcp(127.0.0.1:3306)/")
	rabbitURL := envOr("CREDBROKER_DEV_RABBITMQ_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672")
	rabbitAMQP := envOr("CREDBROKER_DEV_RABBITMQ_AMQP_URL", "amqp://127.0.0.1:5672")

	all := []devBackend{
		{
			name:  "redis",
			probe: func(ctx context.Context) error { return dial(ctx, redisAddr) },
			yaml: fmt.Sprintf(`  - name: demo-redis
    plugin: redis
    environment: dev
    owner: you
    connection: {addr: %q}
`, redisAddr),
			try: `eval "$(./bin/credbroker creds demo-redis --format env)"; redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" --user "$REDIS_USERNAME" SET demo:hello world`,
		},
		{
			name:  "mysql",
			probe: func(ctx context.Context) error { return prepareDevMySQL(ctx, mysqlDSN) },
			env:   map[string]string{"CREDBROKER_DEV_MYSQL_DSN": mysqlDSN},
			yaml: `  - name: demo-mysql
    plugin: mysql
    environment: dev
    owner: you
    connection: {dsn: env:CREDBROKER_DEV_MYSQL_DSN}
`,
			try: `eval "$(./bin/credbroker creds demo-mysql --format env)"; mysql -u "$MYSQL_USER" credbroker_demo -e 'SELECT * FROM orders'`,
		},
	}
	if u, err := url.Parse(rabbitURL); err == nil && u.User != nil {
		pass, _ := u.User.Password()
		user := u.User.Username()
		u.User = nil
		all = append(all, devBackend{
			name:  "rabbitmq",
			probe: func(ctx context.Context) error { return prepareDevRabbitMQ(ctx, u.String(), user, pass) },
			env:   map[string]string{"CREDBROKER_DEV_RABBITMQ_PASSWORD": pass},
			yaml: fmt.Sprintf(`  - name: demo-rabbitmq
    plugin: rabbitmq
    environment: dev
    owner: you
    connection: {management_url: %q, username: %q, password: env:CREDBROKER_DEV_RABBITMQ_PASSWORD, amqp_url: %q}
`, u.String(), user, rabbitAMQP),
			try: `./bin/credbroker creds demo-rabbitmq --format uri   # an amqp:// login for vhost credbroker-demo`,
		})
	}

	var out []devBackend
	for _, b := range all {
		if !slices.ContainsFunc(drivers, func(d plugins.Driver) bool { return d.Name() == b.name }) {
			continue // this binary was built without the plugin
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := b.probe(pctx)
		cancel()
		if err != nil {
			note(fmt.Sprintf("demo %s backend skipped: %v", b.name, err))
			continue
		}
		for k, v := range b.env {
			os.Setenv(k, v)
		}
		out = append(out, b)
	}
	return out
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func dial(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("nothing answers at %s", addr)
	}
	return c.Close()
}

// prepareDevMySQL creates the demo database with a table.
func prepareDevMySQL(ctx context.Context, dsn string) error {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return fmt.Errorf("CREDBROKER_DEV_MYSQL_DSN is not a MySQL DSN")
	}
	if err := dial(ctx, cfg.Addr); err != nil {
		return err
	}
	cfg.MultiStatements = true
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	_, err = db.ExecContext(ctx, `
CREATE DATABASE IF NOT EXISTS credbroker_demo;
CREATE TABLE IF NOT EXISTS credbroker_demo.orders (id INT AUTO_INCREMENT PRIMARY KEY, item VARCHAR(100) NOT NULL, qty INT NOT NULL);
INSERT INTO credbroker_demo.orders (item, qty) SELECT 'keyboard', 2 FROM DUAL WHERE NOT EXISTS (SELECT 1 FROM credbroker_demo.orders);`)
	if err != nil {
		return fmt.Errorf("set up the MySQL demo database: %v", err)
	}
	return nil
}

// prepareDevRabbitMQ creates the demo vhost through the management API.
func prepareDevRabbitMQ(ctx context.Context, mgmtURL, user, pass string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, strings.TrimRight(mgmtURL, "/")+"/api/vhosts/credbroker-demo", nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(user, pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("the management API does not answer at %s (rabbitmq-plugins enable rabbitmq_management)", mgmtURL)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("create vhost credbroker-demo: %s", resp.Status)
	}
	return nil
}

// devRoles are the demo roles of the optional backends, by plugin name.
var devRoles = map[string]string{
	"redis": `  - name: demo-redis
    backend: demo-redis
    owner: you
    default_ttl: 15m
    max_ttl: 1h
    redis:
      rules: ["~demo:*", "+@read", "+@write", "-@dangerous"]
`,
	"mysql": `  - name: demo-mysql
    backend: demo-mysql
    owner: you
    default_ttl: 15m
    max_ttl: 1h
    mysql:
      grants: [{privileges: [SELECT], on: "credbroker_demo.*"}]
`,
	"rabbitmq": `  - name: demo-rabbitmq
    backend: demo-rabbitmq
    owner: you
    default_ttl: 15m
    max_ttl: 1h
    rabbitmq:
      vhosts:
        credbroker-demo: {configure: "^demo\\.", write: "^demo\\.", read: "^demo\\."}
`,
}
