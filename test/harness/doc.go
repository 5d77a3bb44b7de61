// Package harness runs the real credbroker binary for end-to-end, fault and
// benchmark tests, the way an operator and a workload would: it builds the
// binary once per test process, starts `credbroker serve` on a free loopback
// port with a config written for the test, mints identity tokens from an
// issuer whose key is generated inside the test, and talks to the broker over
// HTTP (raw Connect JSON, like curl) or with the Go client.
//
// Every broker started here is stopped in t.Cleanup, and its captured logs
// are then searched for every password and URI the harness saw it issue (and
// every secret a test handed to [Broker.AssertNoSecrets]): a secret in a log
// line fails the test. When the test binary was built with -race the broker
// is built with -race too, and a data race it reports fails the test.
//
// The databases come from plugins/plugintest: [NewStore] and [NewBackend]
// each make a database of their own, dropped when the test ends, so tests
// using the harness can run in parallel.
package harness
