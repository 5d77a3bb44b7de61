// Package bench is credbroker's benchmark: `make bench` runs it.
//
// It starts the built binary (`credbroker serve`) against the local
// PostgreSQL and measures issue, renew and revoke through the broker, over
// HTTP with the Go client and a valid identity token on every call, beside
// a raw baseline that sends the least a DBA would type for the same result
// (one CREATE ROLE … IN ROLE <group>; DROP ROLE) straight to PostgreSQL with
// pgx, in the same run. It prints a table of throughput and p50/p99 latency
// with the ratios and the goals (broker issue throughput at least 0.8× raw
// at concurrency 8; member_of issue at 5 000
// live leases within 20% of an empty database), and an in-process breakdown
// of where an issue spends its time.
//
// Explicit grants cannot reach 5 000 live users: every user adds an entry
// to each table's ACL, pg_class has no TOAST table, and at about 2 400 users
// every GRANT fails with "row is too big". The grants scenario therefore
// fills until the first failed issue (or -cb.grants-fill-budget), reports
// where that happened, revokes a few leases and measures just below it.
//
// Alongside, an in-process breakdown times each step of issue, renew and
// revoke (the broker's own packages, called as broker/service.go calls
// them) in rounds alternating with the same calls through the broker, and a
// sampler of pg_stat_activity shows what PostgreSQL sessions wait on during
// the fills.
//
// Then, for Redis, RabbitMQ and MySQL/MariaDB, each with a broker of its
// own (fresh lease store, one backend with the sweep off, one role), issue
// and revoke through the broker beside a raw baseline that sends what the
// backend's plugin sends, with the client library the plugin uses (go-redis:
// ACL SETUSER … #<sha256>, ACL DELUSER; rabbit-hole: PUT user with a
// password hash, permissions, topic permissions, DELETE user, close its
// connections; go-sql-driver/mysql: CREATE USER … IDENTIFIED BY PASSWORD,
// GRANT, KILL, DROP USER), at concurrency 1 and 8 in the same alternating
// rounds (section 6 of the report). The servers are shared: each scenario
// has its own vhost or database and key patterns, and every user either
// side makes starts with cb_cbbench_<run>_, which is what is counted and
// deleted at the end, failure or not. A backend that does not answer is
// skipped with a note, or fails under CREDBROKER_REQUIRE_SERVICES=1.
//
// MQTT (Mosquitto 2 with dynamic security, .ci/mosquitto-dynsec) is measured
// the same way, its broker side running the program
// cmd/credbroker-plugin-mqtt as `plugin: external` and its raw side sending
// the same dynsec commands (createRole + createClient; deleteClient +
// deleteRole) with paho.mqtt.golang. Section 7 runs one in-tree backend,
// Redis, both in process and as the program test/plugins/redis, and prints
// the median each call gains out of process (target: at most 0.5 ms).
//
// Everything lives in Benchmark functions, so `go test ./...` (and so
// `make test`) compiles and vets the package but never runs it. Knobs, given
// as `make bench BENCH_FLAGS='-cb.ops=200'` or after the package on the go
// test command line: -cb.ops, -cb.live, -cb.grants-ops,
// -cb.grants-fill-budget, -cb.breakdown-ops, -cb.client-idle-conns,
// -cb.skip-member-of, -cb.skip-grants, -cb.skip-breakdown, -cb.redis-ops,
// -cb.rabbitmq-ops, -cb.mysql-ops, -cb.skip-redis, -cb.skip-rabbitmq,
// -cb.skip-mysql, -cb.mqtt-ops, -cb.skip-mqtt, -cb.external-ops, -cb.skip-external.
package bench
