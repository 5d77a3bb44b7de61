// Package mqtt is the MQTT backend: it issues short-lived clients of a
// Mosquitto 2 broker through its dynamic-security plugin, each with a role
// of its own holding the ACLs a credbroker role names, and removes them
// again. It speaks to the plugin as dynsec's own tools do, with JSON
// commands published to $CONTROL/dynamic-security/v1, over an MQTT 3.1.1
// connection made with Eclipse Paho (github.com/eclipse/paho.mqtt.golang).
//
// Why that library, v1.5.1: it is the Eclipse Foundation's Go client
// (the foundation Mosquitto comes from), still maintained and released, and
// the most used MQTT client in Go. It does TLS with a plain
// [crypto/tls.Config] and reports a lost connection, both of which the
// admin connection needs. Its MQTT 3.1.1 is all dynsec needs: a command is
// one publish, its answer comes on one subscription, and no MQTT 5
// property is involved. Its MQTT 5 sibling, github.com/eclipse/paho.golang,
// is pre-1.0 (v0.x, its API still moving) and available to this build only
// from an old copy, not as an approved release. The tests log in with the
// same library, as a workload would.
//
// It is the first backend credbroker runs as a separate program as well as
// in process: cmd/credbroker-plugin-mqtt serves [New] over the plugin
// protocol.
//
// # Configuration
//
// The connection section names the broker and the dynsec admin; the
// password is a reference, never inline:
//
//	connection:
//	  url: mqtts://broker.internal:8883   # tcp:// or mqtt:// (1883), ssl://, tls:// or mqtts:// (8883)
//	  username: credbroker-admin          # a dynsec client that may administer dynsec
//	  password: env:MQTT_ADMIN_PASSWORD
//	  tls: {ca_file: /etc/credbroker/mqtt-ca.pem, server_name: broker.internal}   # TLS URLs only
//	  client_id_prefix: credbroker-       # default; the admin's client id ends in random characters
//
// The admin needs what `mosquitto_ctrl dynsec init` gives the admin it
// makes: publishClientSend and subscribePattern on
// $CONTROL/dynamic-security/#. An admin connection in plain text to a broker
// off loopback is a warning at start ([Plugin.Warnings]), and so is a
// default ACL access that allows publishClientSend or subscribe, which
// would let every issued client do so wherever its ACLs say nothing.
//
// A role's `mqtt:` section lists ACLs for the client's own role, and/or
// existing dynsec roles the client gets too; at least one of the two:
//
//	mqtt:
//	  acls:
//	    - {type: publishClientSend, topic: "sensors/+/temperature", allow: true}
//	    - {type: subscribePattern, topic: "commands/#", allow: true, priority: 1}
//	    - {type: publishClientSend, topic: "sensors/secret/#", allow: false, priority: 5}
//	  roles: [telemetry-readers]
//
// An ACL's type is one of publishClientSend, publishClientReceive,
// subscribeLiteral, subscribePattern, unsubscribeLiteral and
// unsubscribePattern; its topic a topic filter; allow is required;
// priority (default 0, within ±1000000) orders a role's ACLs, highest
// first. Existing roles are checked in the order listed, after the
// client's own role.
//
// # $CONTROL
//
// Whoever may publish to $CONTROL/dynamic-security/v1 administers the
// broker: makes clients of its own, gives itself every topic. dynsec
// publishes the answers to every admin's commands on
// $CONTROL/dynamic-security/v1/response, to every subscriber. So:
//
//   - an ACL whose topic starts with $CONTROL is a configuration error (in a
//     publish ACL, + and # never match a topic starting with $, so no other
//     filter can reach it);
//   - every client's own role starts with three denials above every other
//     ACL (publishClientSend, subscribePattern and publishClientReceive on
//     $CONTROL/#, at priority 1000001) and comes before every other role
//     the client has, so nothing granted after it can undo them; a
//     subscribePattern of # would otherwise match a subscription to
//     $CONTROL topics, since dynsec applies no $ rule to subscriptions. The
//     subscribe denial does not see through a shared subscription
//     ($share/<group>/$CONTROL/…, which dynsec grants a subscribePattern of
//     #), so the receive denial closes the delivery side whatever the
//     subscribe check lets through, even with an existing role that allows
//     receiving $CONTROL;
//   - at start, [Plugin.CheckRole] refuses an existing role that does not
//     exist, or that allows publishClientSend, subscribeLiteral or
//     subscribePattern on a $CONTROL topic.
//
// (dynsec itself never lets a $CONTROL topic fall through to the default
// ACL access, for publishing or receiving; only ACLs naming $CONTROL
// grant it.)
//
// The admin connection's client id ends in 12 random characters, new at
// every dial: a client that logs in with a connected client's id takes its
// session over, so a holder that knew the admin's could disconnect it. The
// plugin dials again after a lost connection.
//
// # What happens on the broker
//
// Create sends createRole (named as the username, with the denials and the
// role's ACLs), then, once the role exists, createClient with the username,
// the password and the roles. When createClient fails, the role is deleted
// again (and the client, when its answer never came), so nothing is left
// half-made; a role that already exists is never taken over. The password
// travels to the broker over the admin connection, which dynsec stores as a
// salted PBKDF2 hash. The lease's State is {"v":1,"role":"<role>"}.
//
// Usernames come from [plugins.NewUsername]: the cb_ prefix, at most 64
// bytes (dynsec has no limit; 64 is credbroker's choice). A client or role
// without the prefix is never created, changed or deleted. ListManaged
// lists the clients with the prefix, and the roles with it that have no
// client (left by a failed Create or Revoke), which the orphan sweep
// revokes.
//
// Revoke sends deleteClient, which makes Mosquitto disconnect every session
// logged in with the username, and deleteRole, in one message. What is
// already gone is success. Without a State, the role is the username.
//
// # Expiry
//
// dynsec clients have no expiry. Renew does nothing; the broker's reaper is
// the only thing that removes a client when its lease ends, so keep it
// running. dynsec keeps its clients in its JSON file, so a restart of the
// broker keeps them, issued and revoked alike.
//
// # The credential
//
// The URI is mqtt://<user>:<password>@host:port (mqtts:// over TLS). Env
// holds MQTT_HOST, MQTT_PORT, MQTT_TLS ("1" over TLS, "0" in plain text),
// MQTT_USERNAME, MQTT_PASSWORD and MQTT_URL; Fields hold host, port,
// username and tls.
//
// `credbroker connect` opens mosquitto_sub, else mosquitto_pub. They take a
// password on their command line (-P, or -L's URL), which every local user
// can read in the process list, or from their options file,
// $XDG_CONFIG_HOME/mosquitto_sub, one "-option value" a line; connect
// writes the password there. Unless MQTT_TLS is "0", the client gets
// --tls-use-os-certs, so it speaks TLS and trusts the system's CAs (without
// it, mosquitto_sub would send its CONNECT, password included, in clear to
// the TLS port). The broker's certificate must name MQTT_HOST, since
// mosquitto_sub has no option for another server name; a broker whose
// certificate comes from a private CA needs the CA after `--`:
//
//	credbroker connect <role> -- --cafile /etc/credbroker/mqtt-ca.pem -t 'sensors/#'
//
// By hand, the same:
//
//	d=$(mktemp -d); printf -- '-P %s\n' "$MQTT_PASSWORD" >"$d/mosquitto_sub"
//	XDG_CONFIG_HOME=$d mosquitto_sub -h "$MQTT_HOST" -p "$MQTT_PORT" -u "$MQTT_USERNAME" -t 'sensors/#'; rm -r "$d"
//
// (adding --tls-use-os-certs, or --cafile FILE, when MQTT_TLS is 1).
//
// # The demo
//
// `credbroker dev` offers demo-mqtt when the broker at
// $CREDBROKER_DEV_MQTT_URL (default tcp://127.0.0.1:1885, where
// .ci/mosquitto-dynsec starts one) answers to the admin
// $CREDBROKER_DEV_MQTT_ADMIN_USER (default credbroker-admin) with the
// password $CREDBROKER_DEV_MQTT_ADMIN_PASSWORD, or else the one in
// /tmp/credbroker-mosquitto/admin-password.
package mqtt
