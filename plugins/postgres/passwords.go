package postgres

import (
	"context"
	"crypto/sha256"
	"sync"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/secret"
)

const (
	// readyPasswords is how many password/verifier pairs wait ready for the
	// next Creates: enough for a burst of issues at the broker's usual
	// concurrency, few enough that the hashing done ahead is never much.
	readyPasswords = 16
	// rememberedVerifiers bounds the verifiers kept for passwords handed
	// out but not yet used by a Create. A password the broker never creates
	// a user with (its issue failed before Create) is forgotten once this
	// many newer ones were handed out.
	rememberedVerifiers = 4 * readyPasswords
)

// passwords hashes passwords ahead of time: computing a SCRAM verifier takes
// 4 096 rounds of PBKDF2 (about 1.5 ms of CPU), which would otherwise sit on
// the request path of every Create. A background goroutine keeps
// readyPasswords pairs ready; [passwords.take] hands one out and remembers
// its verifier, which [passwords.verifier] returns once, to the Create of
// that password.
//
// The passwords and verifiers stay in memory only: nothing here is logged,
// printed or returned but the password itself, as a [secret.Value].
type passwords struct {
	ready  chan pair
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	verifiers map[passwordKey]string           // by password, until used or forgotten
	order     [rememberedVerifiers]passwordKey // the remembered passwords, oldest first from next
	next      int                              // where the next remembered password goes
}

// passwordKey is the SHA-256 of a password: the remembered verifiers are
// found by it, so no plaintext outlives its use in them.
type passwordKey [sha256.Size]byte

func keyOf(password secret.Value) passwordKey { return sha256.Sum256([]byte(password.Reveal())) }

// pair is a password and its SCRAM verifier.
type pair struct {
	password secret.Value
	verifier string
}

// startPasswords starts the goroutine that keeps pairs ready; stop ends it.
func startPasswords() *passwords {
	ctx, cancel := context.WithCancel(context.Background())
	w := &passwords{
		ready:     make(chan pair, readyPasswords),
		cancel:    cancel,
		done:      make(chan struct{}),
		verifiers: make(map[passwordKey]string, rememberedVerifiers),
	}
	go w.fill(ctx)
	return w
}

// fill makes pairs until ctx ends, blocking while readyPasswords wait.
func (w *passwords) fill(ctx context.Context) {
	defer close(w.done)
	for {
		pw := plugins.NewPassword()
		next := pair{password: pw, verifier: SCRAMVerifier(pw.Reveal())}
		select {
		case w.ready <- next:
		case <-ctx.Done():
			return
		}
	}
}

// stop ends the goroutine and waits for it.
func (w *passwords) stop() {
	w.cancel()
	<-w.done
}

// take returns a password for a user about to be created: a ready one, whose
// verifier it remembers, or a fresh one when none is ready (its verifier is
// then computed by Create).
func (w *passwords) take() secret.Value {
	select {
	case p := <-w.ready:
		w.remember(p)
		return p.password
	default:
		return plugins.NewPassword()
	}
}

// remember keeps p's verifier for the Create of its password, forgetting
// the oldest one kept when rememberedVerifiers are.
func (w *passwords) remember(p pair) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.verifiers, w.order[w.next]) // used already, or never to be
	key := keyOf(p.password)
	w.order[w.next] = key
	w.next = (w.next + 1) % rememberedVerifiers
	w.verifiers[key] = p.verifier
}

// verifier returns the SCRAM verifier of password: the one remembered when
// take handed it out, which is forgotten then, so it serves one Create; or
// a fresh one (new salt) for a password from elsewhere. w may be nil.
func (w *passwords) verifier(password secret.Value) string {
	if w != nil {
		key := keyOf(password)
		w.mu.Lock()
		v, ok := w.verifiers[key]
		delete(w.verifiers, key)
		w.mu.Unlock()
		if ok {
			return v
		}
	}
	return SCRAMVerifier(password.Reveal())
}
