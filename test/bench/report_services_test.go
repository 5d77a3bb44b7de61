package bench

import (
	"fmt"
	"io"
	"runtime"
	"sync"
	"text/tabwriter"
	"time"
)

// svcReport is what the Redis, RabbitMQ and MySQL scenarios add to the
// report beside their measurements (key{scn, "svc", side, op, conc}).
type svcReport struct {
	mu    sync.Mutex
	info  map[string]string // scenario → the server and the role measured
	notes map[string]string // scenario → why it was skipped
	ops   map[string]int    // scenario → operations per measurement, once it ran
}

// svcOrder is the order the service scenarios run and print in.
var svcOrder = []string{"redis", "rabbitmq", "mysql", "mqtt"}

// svcRawDoc says what each raw baseline sends (see the svc_*_test.go files).
var svcRawDoc = map[string][]string{
	"redis": {
		"the least an operator types, go-redis client with the plugin's options (pool 8): issue = ACL SETUSER <name>",
		"reset on #<sha256> resetkeys resetchannels -@all <rules>; revoke = ACL DELUSER; each + ACL SAVE with an aclfile.",
	},
	"rabbitmq": {
		"the least an operator sends to the management API, net/http with kept-alive connections (8 idle):",
		"issue = PUT /api/users/<name> {password, tags \"\"} + PUT /api/permissions/<vhost>/<name>; revoke = DELETE /api/users/<name>.",
	},
	"mysql": {
		"the least a DBA types, database/sql + go-sql-driver/mysql, pool of 8 (the broker's max_conns is set to 8 too):",
		"issue = CREATE USER '<name>'@'%' IDENTIFIED BY '<password>' + one GRANT … ON <db>.*; revoke = DROP USER.",
	},
	"mqtt": {
		"the plugin's own commands (there is no shorter way), paho.mqtt.golang, one admin connection, QoS 1 to",
		"$CONTROL/dynamic-security/v1: issue = createRole (3 $CONTROL guard ACLs + the role's), then createClient (2 round",
		"trips); revoke = deleteClient + deleteRole in one message. The broker side runs cmd/credbroker-plugin-mqtt (external).",
	},
}

func (rep *report) svcInit() {
	if rep.svc.info == nil {
		rep.svc.info, rep.svc.notes, rep.svc.ops = map[string]string{}, map[string]string{}, map[string]int{}
	}
}

func (rep *report) svcNote(scn, note string) {
	rep.svc.mu.Lock()
	defer rep.svc.mu.Unlock()
	rep.svcInit()
	rep.svc.notes[scn] = note
}

func (rep *report) svcNoted(scn string) bool {
	rep.svc.mu.Lock()
	defer rep.svc.mu.Unlock()
	_, ok := rep.svc.notes[scn]
	return ok
}

// svcNoteFor returns the note of scn, "" when there is none.
func (rep *report) svcNoteFor(scn string) string {
	rep.svc.mu.Lock()
	defer rep.svc.mu.Unlock()
	return rep.svc.notes[scn]
}

func (rep *report) svcInfo(scn, info string) {
	rep.svc.mu.Lock()
	defer rep.svc.mu.Unlock()
	rep.svcInit()
	rep.svc.info[scn] = info
}

func (rep *report) svcRan(scn string, ops int) {
	rep.svc.mu.Lock()
	defer rep.svc.mu.Unlock()
	rep.svcInit()
	rep.svc.ops[scn] = ops
}

// printServices prints section 6: broker vs raw for Redis, RabbitMQ and
// MySQL/MariaDB, or why a backend was not measured.
func (rep *report) printServices(w io.Writer, skipped map[string]bool) {
	rep.svc.mu.Lock()
	defer rep.svc.mu.Unlock()
	rep.svcInit()
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("\n6. Redis, RabbitMQ, MySQL/MariaDB and MQTT: broker vs raw, issue and revoke at concurrency 1 and %d\n\n", conns)
	p("   Each backend has its own broker (fresh lease store, one backend with sweep: false, one role with the same\n")
	p("   grants as the raw side's) and a raw baseline, measured in the same %d alternating rounds. Redis is called\n", rounds)
	p("   with both clients, the others with the proto one.\n")
	p("   Before each backend: a warm-up of %d ops per side at c=%d. Usernames: cb_cbbench_<run>_<rd|mq|my|rw>_<random>.\n", svcWarmup, conns)
	measured := false
	for _, scn := range svcOrder {
		note := rep.svc.notes[scn]
		switch {
		case skipped[scn]:
			p("\n   %-9s not run (-cb.skip-%s)\n", scn+":", scn)
			continue
		case rep.svc.info[scn] == "" && note != "":
			p("\n   %-9s %s\n", scn+":", note)
			continue
		case rep.svc.info[scn] == "":
			p("\n   %-9s did not get as far as measuring (see the errors below)\n", scn+":")
			continue
		}
		measured = true
		p("\n   %-9s %s\n", scn+":", rep.svc.info[scn])
		if note != "" {
			p("   %-9s %s\n", "", note)
		}
		for i, l := range svcRawDoc[scn] {
			lead := "raw:"
			if i > 0 {
				lead = ""
			}
			p("   %-9s %s\n", lead, l)
		}
		if n, ok := rep.svc.ops[scn]; ok {
			p("   %-9s %d ops per measurement\n", "", n)
		}
	}
	if !measured {
		return
	}
	p("\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "backend\top\tconc\tclient\tops\tbroker ops/s\tp50\tp99\traw ops/s\tp50\tp99\tbroker/raw\tp50 added\tload\t")
	for _, scn := range svcOrder {
		for _, row := range []struct {
			op   string
			conc int
		}{{"issue", 1}, {"revoke", 1}, {"issue", conns}, {"revoke", conns}} {
			rr, rok := rep.get(scn, "svc", "raw", row.op, row.conc)
			for _, sd := range []string{sideProto, sideJSON} {
				br, bok := rep.get(scn, "svc", sd, row.op, row.conc)
				if !bok && (!rok || sd != sideProto) {
					continue
				}
				_, shown := ratio(br, rr, bok, rok)
				added := "-"
				if bok && rok {
					added = fmt.Sprintf("%+.1fms", float64(br.pct(.5)-rr.pct(.5))/float64(time.Millisecond))
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", scn, row.op, row.conc, codec(sd), br.ops,
					opsps(br, bok), ms(br.pct(.5)), ms(br.pct(.99)), opsps(rr, rok), ms(rr.pct(.5)), ms(rr.pct(.99)), shown, added, br.load)
			}
		}
	}
	tw.Flush()
	p("(broker/raw: throughput ratio; p50 added: the broker's median latency minus the raw baseline's, i.e. what the\n")
	p(" broker puts on top of the least the backend needs per call: the token check, HTTP, the lease store writes — issue:\n")
	p(" INSERT PENDING + activate with its `issued` event; revoke: get, claim, the `revoked` event — and whatever the\n")
	p(" plugin does beyond the raw side's commands. load: the 1-minute load average when the measurement began;\n")
	p(" %d CPUs, shared by the broker, the servers and this process.)\n", runtime.NumCPU())
}
