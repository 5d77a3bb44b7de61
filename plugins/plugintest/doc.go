// Package plugintest is what a backend's tests use: the conformance suite
// every [plugins.Plugin] must pass, and the discovery of the real services the
// tests run against.
//
// # The conformance suite
//
// A backend's test opens nothing itself: it hands [Run] a [Harness] with its
// driver, a connection and role section, and a Login function that connects
// as an issued credential. Run then creates a user, logs in, checks the
// grants, renews, revokes, proves the user and its open session are gone,
// revokes again, creates 50 users at once, and provokes errors to prove no
// password leaks through them.
//
// # Services
//
// Tests reach services through CREDBROKER_TEST_* variables with loopback
// defaults ([PostgresURL], [ServiceURL]). A service that does not answer is
// started with Docker when a Docker engine answers, and the test is skipped
// otherwise; with CREDBROKER_REQUIRE_SERVICES=1, as in CI, it fails instead.
// [NewTestDatabase] gives a test its own PostgreSQL database, so tests run in
// parallel without seeing each other's tables.
package plugintest
