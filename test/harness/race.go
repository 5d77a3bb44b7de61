//go:build race

package harness

// raceEnabled is whether the test binary, and so the broker it builds, runs
// with the race detector.
const raceEnabled = true
