//go:build !linux

package external

// protectBroker does nothing where there is no prctl(PR_SET_DUMPABLE).
func protectBroker() {}
