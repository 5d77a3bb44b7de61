package client

import (
	"path/filepath"
	"testing"
	"time"
)

// TestLockFile: a second taker of the refresh lock waits until the first
// releases it, so two commands never use one refresh token at once.
func TestLockFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "session.json.lock")
	unlock, err := lockFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{})
	go func() {
		unlock2, err := lockFile(path)
		if err != nil {
			t.Error(err)
			close(got)
			return
		}
		close(got)
		unlock2()
	}()
	select {
	case <-got:
		t.Fatal("a second lockFile got the lock while the first held it")
	case <-time.After(200 * time.Millisecond): // it must still be waiting
	}
	unlock()
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the second lockFile did not get the lock once it was released")
	}
}
