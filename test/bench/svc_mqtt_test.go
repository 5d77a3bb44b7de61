package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/test/harness"
)

// The MQTT scenario measures the MQTT backend as it is meant to run: the
// program cmd/credbroker-plugin-mqtt that the broker starts for
// `plugin: external`, pinned by its sha256, driving Mosquitto 2's
// dynamic-security plugin (.ci/mosquitto-dynsec). The raw baseline sends
// what plugins/mqtt sends, with the same client library (paho.mqtt.golang,
// one admin connection, QoS 1 publishes to $CONTROL/dynamic-security/v1,
// answers on …/response told apart by correlationData):
//
//	issue:  createRole <name> (the three $CONTROL guard ACLs and the role's ACLs), then
//	        createClient <name> (password, roles [<name>]): two round trips
//	revoke: deleteClient <name> + deleteRole <name>: one round trip
type rawMQTT struct {
	admin  *harness.DynsecAdmin
	prefix string
	acls   []map[string]any
}

// mqttGuardPriority is plugins/mqtt's guardPriority (MaxPriority + 1).
const mqttGuardPriority = 1_000_001

func (r *rawMQTT) issue(ctx context.Context) (leaseRef, error) {
	name := r.prefix + randText(10)
	acls := []map[string]any{
		{"acltype": "publishClientSend", "topic": "$CONTROL/#", "priority": mqttGuardPriority, "allow": false},
		{"acltype": "subscribePattern", "topic": "$CONTROL/#", "priority": mqttGuardPriority, "allow": false},
		{"acltype": "publishClientReceive", "topic": "$CONTROL/#", "priority": mqttGuardPriority, "allow": false},
	}
	acls = append(acls, r.acls...)
	text := "credbroker: bench"
	rs, err := r.admin.Run(ctx, harness.DynsecCommand{"command": "createRole", "rolename": name, "textname": text, "acls": acls})
	if err != nil {
		return leaseRef{}, err
	}
	if err := rs[0].Err(); err != nil {
		return leaseRef{}, err
	}
	rs, err = r.admin.Run(ctx, harness.DynsecCommand{
		"command": "createClient", "username": name, "password": plugins.NewPassword().Reveal(),
		"textname": text, "textdescription": "issued by credbroker; deleted when its lease ends",
		"roles": []map[string]any{{"rolename": name, "priority": 0}},
	})
	if err == nil {
		err = rs[0].Err()
	}
	if err != nil {
		_ = r.admin.Remove(context.WithoutCancel(ctx), nil, []string{name})
		return leaseRef{}, err
	}
	return leaseRef{username: name}, nil
}

func (r *rawMQTT) revoke(ctx context.Context, l leaseRef) error {
	return r.admin.Remove(ctx, []string{l.username}, []string{l.username})
}

func (r *rawMQTT) side() sideOps { return sideOps{issue: r.issue, revoke: r.revoke} }

func benchMQTT(b *testing.B, rep *report) {
	const scn = "mqtt"
	defer noteEnd(b, rep, scn)
	m := harness.NewMQTT(b) // skips, or fails under CREDBROKER_REQUIRE_SERVICES=1
	admin := m.Admin(b)
	// Registered after the admin, so it runs before the admin is closed and
	// after the broker has stopped: delete whatever of this run is left.
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), svcTimeout)
		defer cancel()
		clients, roles, err := admin.Names(ctx, userPrefix)
		if err == nil {
			err = admin.Remove(ctx, clients, roles)
		}
		if err != nil {
			b.Errorf("mqtt cleanup: %v", err)
		}
		if n := len(clients) + len(roles); n > 0 {
			b.Logf("mqtt cleanup: deleted %d clients and roles this run left behind", n)
		}
	})
	prog, sum := harness.Program(b, harness.MQTTCommandProgram)

	topic := "cbbench/" + runID
	acls := []map[string]any{
		{"acltype": "publishClientSend", "topic": topic + "/#", "priority": 0, "allow": true},
		{"acltype": "subscribePattern", "topic": topic + "/#", "priority": 0, "allow": true},
	}
	var section strings.Builder
	section.WriteString("acls:\n")
	for _, a := range acls {
		fmt.Fprintf(&section, "  - {type: %s, topic: %q, allow: true}\n", a["acltype"], a["topic"])
	}
	broker := startSvcBroker(b, svcBroker{
		plugin: "mqtt",
		external: fmt.Sprintf("command: [%q]\nsha256: %s\nenv:\n  MQTT_ADMIN_PASSWORD: env:CB_BENCH_MQTT_ADMIN_PASSWORD",
			prog, sum),
		role:       svcRole("mq"),
		connection: fmt.Sprintf("url: %q\nusername: %q\npassword: env:MQTT_ADMIN_PASSWORD", m.URL, m.AdminUser),
		section:    section.String(),
		env:        []string{"CB_BENCH_MQTT_ADMIN_PASSWORD=" + m.AdminPassword()},
	})
	raw := &rawMQTT{admin: admin, prefix: svcRawPrefix(), acls: acls}

	rep.svcInfo(scn, fmt.Sprintf("Mosquitto with dynamic security at %s:%s, through the program cmd/credbroker-plugin-mqtt "+
		"(plugin: external); role ACLs publishClientSend and subscribePattern %s/#", m.Host, m.Port, topic))
	count := func(tb testing.TB) int {
		tb.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), svcTimeout)
		defer cancel()
		clients, roles, err := admin.Names(ctx, userPrefix)
		if err != nil {
			tb.Fatalf("mqtt: list clients: %v", err)
		}
		return len(clients) + len(roles)
	}
	benchService(b, rep, scn, *flagMQTTOps, []side{{"raw", raw.side()}, {sideProto, broker.proto.side(broker.role)}}, count)
}
