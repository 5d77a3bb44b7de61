// Command credbroker-plugin-mqtt is credbroker's MQTT backend (Mosquitto 2
// with the dynamic-security plugin, see plugins/mqtt) as a program of its
// own. The broker starts it for a backend configured with
//
//	plugin: external
//	command: [/usr/local/libexec/credbroker/credbroker-plugin-mqtt]
//	sha256: <sha256sum of the binary>
//	env: {MQTT_ADMIN_PASSWORD: file:/etc/credbroker/mqtt-admin-password}
//	connection:
//	  url: mqtts://broker.internal:8883
//	  username: credbroker-admin
//	  password: env:MQTT_ADMIN_PASSWORD
//
// and speaks to it over the plugin protocol (proto/credbroker/plugin/v1);
// run by hand, it says so and exits.
package main

import (
	"github.com/credbroker/credbroker/plugins/mqtt"
	"github.com/credbroker/credbroker/plugins/sdk"
)

func main() { sdk.Serve(mqtt.New()) }
