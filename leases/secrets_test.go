package leases

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/golang-migrate/migrate/v4"
	"github.com/jackc/pgx/v5"

	"github.com/credbroker/credbroker/secret"
)

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, KEKSize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func keyring(t *testing.T, keys ...[]byte) *Keyring {
	t.Helper()
	k, err := NewKeyring(keys...)
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	return k
}

// syncBuffer is a log sink tests grep.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// openKeyed opens a store on b's database with keys and a debug logger
// writing to logs.
func openKeyed(t *testing.T, b *testBundle, keys *Keyring, logs *syncBuffer) *Store {
	t.Helper()
	var w = logs
	if w == nil {
		w = &syncBuffer{}
	}
	logger := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := Open(t.Context(), Config{DSN: b.dsn, Now: b.clock.Now, MaxConns: 4, Keyring: keys, Logger: logger})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// rotate records and finishes a rotation of backend to value.
func rotate(t *testing.T, s *Store, backend string, value secret.Value) AdminSecret {
	t.Helper()
	cand, err := s.BeginRotation(t.Context(), backend, value, "tester")
	if err != nil {
		t.Fatalf("BeginRotation: %v", err)
	}
	cur, err := s.FinishRotation(t.Context(), cand, "tester")
	if err != nil {
		t.Fatalf("FinishRotation: %v", err)
	}
	return cur
}

func mustCurrent(t *testing.T, s *Store, backend string) *AdminSecret {
	t.Helper()
	cur, _, err := s.AdminSecrets(t.Context(), backend)
	if err != nil {
		t.Fatalf("AdminSecrets(%s): %v", backend, err)
	}
	if cur == nil {
		t.Fatalf("AdminSecrets(%s): no current secret", backend)
	}
	return cur
}

func TestParseKEK(t *testing.T) {
	t.Parallel()
	raw := bytes.Repeat([]byte{0x0a}, 32) // ends in a newline byte: raw keys are taken as they are
	for name, tc := range map[string]struct {
		in      []byte
		want    []byte
		errPart string
	}{
		"Raw32":           {in: raw, want: raw},
		"Base64":          {in: []byte(base64.StdEncoding.EncodeToString(raw) + "\n"), want: raw},
		"Base64Unpadded":  {in: []byte(base64.RawStdEncoding.EncodeToString(raw)), want: raw},
		"Base64Of16Bytes": {in: []byte(base64.StdEncoding.EncodeToString(raw[:16])), errPart: "base64 of 16 bytes; want 32"},
		"Short":           {in: []byte("too-short-key!"), errPart: "14 bytes that are not base64"},
		"Raw31":           {in: raw[:31], errPart: "31 bytes that are not base64"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseKEK(tc.in)
			if tc.errPart != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errPart) {
					t.Fatalf("ParseKEK: %v, want an error containing %q", err, tc.errPart)
				}
				if strings.Contains(err.Error(), string(tc.in)) {
					t.Fatalf("the error quotes the key material: %v", err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Fatalf("ParseKEK = %x, %v; want %x", got, err, tc.want)
			}
		})
	}
}

func TestNewKeyring(t *testing.T) {
	t.Parallel()
	k1, k2 := newKey(t), newKey(t)
	if _, err := NewKeyring(k1, k2, k1); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "keys 0 and 2 are the same key") {
		t.Fatalf("duplicate key: %v", err)
	}
	if _, err := NewKeyring(); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("no key: %v", err)
	}
	kr := keyring(t, k2, k1)
	if kr.Newest() != KEKID(k2) || strings.Join(kr.IDs(), ",") != KEKID(k2)+","+KEKID(k1) {
		t.Fatalf("ids %v, newest %s", kr.IDs(), kr.Newest())
	}
	if len(KEKID(k1)) != 16 || strings.Contains(hex.EncodeToString(k1), KEKID(k1)) {
		t.Fatalf("KEKID %s", KEKID(k1))
	}
}

func TestAdminSecrets(t *testing.T) {
	t.Parallel()

	t.Run("RoundTripAndRotationRecord", func(t *testing.T) {
		t.Parallel()
		_, b := setup(t)
		s := openKeyed(t, b, keyring(t, newKey(t)), nil)
		if cur, cand, err := s.AdminSecrets(t.Context(), "orders-pg"); err != nil || cur != nil || cand != nil {
			t.Fatalf("nothing stored yet: %v %v %v", cur, cand, err)
		}
		pw := secret.New("first-" + NewID())
		cand, err := s.BeginRotation(t.Context(), "orders-pg", pw, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.BeginRotation(t.Context(), "orders-pg", secret.New("other"), "bob"); !errors.Is(err, ErrConflict) {
			t.Fatalf("second rotation while one is recorded: %v, want ErrConflict", err)
		}
		cur, got, err := s.AdminSecrets(t.Context(), "orders-pg")
		if err != nil || cur != nil || got == nil || got.Value.Reveal() != pw.Reveal() || got.Slot != SlotCandidate {
			t.Fatalf("after BeginRotation: cur %v cand %+v err %v", cur, got, err)
		}
		vers, err := s.AdminSecretVersions(t.Context())
		if err != nil || vers["orders-pg"].Candidate == 0 || vers["orders-pg"].Current != 0 {
			t.Fatalf("versions %+v %v", vers, err)
		}
		done, err := s.FinishRotation(t.Context(), cand, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if done.Version <= cand.Version || done.RotatedAt.IsZero() {
			t.Fatalf("finished %+v", done)
		}
		now := mustCurrent(t, s, "orders-pg")
		if now.Value.Reveal() != pw.Reveal() || now.Version != done.Version {
			t.Fatalf("current %+v", now)
		}
		// A second rotation replaces the current secret.
		pw2 := secret.New("second-" + NewID())
		rotate(t, s, "orders-pg", pw2)
		if got := mustCurrent(t, s, "orders-pg"); got.Value.Reveal() != pw2.Reveal() {
			t.Fatal("second rotation did not replace the current secret")
		}
		evs := eventsOf(t, s, "")
		var rotated []Event
		for _, e := range evs {
			if e.Kind == EventRootRotated {
				rotated = append(rotated, e)
			}
		}
		if len(rotated) != 2 || rotated[0].Actor != "alice" || rotated[0].Details["backend"] != "orders-pg" {
			t.Fatalf("root_rotated events %+v", rotated)
		}
		if _, err := s.VerifyChain(t.Context()); err != nil {
			t.Fatalf("VerifyChain: %v", err)
		}
	})

	t.Run("AbortRotation", func(t *testing.T) {
		t.Parallel()
		_, b := setup(t)
		s := openKeyed(t, b, keyring(t, newKey(t)), nil)
		old := secret.New("old-" + NewID())
		rotate(t, s, "pg", old)
		cand, err := s.BeginRotation(t.Context(), "pg", secret.New("never-taken"), "alice")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.AbortRotation(t.Context(), "pg", cand.ID, "broker", "the backend refused it"); err != nil {
			t.Fatal(err)
		}
		if err := s.AbortRotation(t.Context(), "pg", cand.ID, "broker", "again"); err != nil {
			t.Fatalf("aborting twice: %v", err)
		}
		cur, c, err := s.AdminSecrets(t.Context(), "pg")
		if err != nil || c != nil || cur.Value.Reveal() != old.Reveal() {
			t.Fatalf("after abort: %v %v %v", cur, c, err)
		}
		if k := kinds(eventsOf(t, s, "")); strings.Count(k, EventRootRotationRolledBack) != 1 {
			t.Fatalf("events %s", k)
		}
	})

	t.Run("FinishAfterAnotherRolledItBack", func(t *testing.T) {
		t.Parallel()
		_, b := setup(t)
		s := openKeyed(t, b, keyring(t, newKey(t)), nil)
		cand, err := s.BeginRotation(t.Context(), "pg", secret.New("taken-by-backend"), "alice")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.AbortRotation(t.Context(), "pg", cand.ID, "broker", "looked abandoned"); err != nil {
			t.Fatal(err)
		}
		// Which password the backend holds is unknown here (the replica
		// that rolled back may have set the current one again after this
		// change landed): both are kept, this one as the candidate again,
		// for the next recovery to log in with. Nothing is dropped.
		_, err = s.FinishRotation(t.Context(), cand, "alice")
		if !errors.Is(err, errRolledBackMeanwhile) {
			t.Fatalf("finish after a roll-back: %v, want errRolledBackMeanwhile", err)
		}
		cur, kept, err := s.AdminSecrets(t.Context(), "pg")
		if err != nil {
			t.Fatal(err)
		}
		if cur != nil {
			t.Fatalf("a current password appeared: version %d", cur.Version)
		}
		if kept == nil || kept.Value.Reveal() != "taken-by-backend" {
			t.Fatal("the password the backend may hold is not kept as the candidate")
		}
	})

	t.Run("CiphertextMovedToAnotherRowFails", func(t *testing.T) {
		t.Parallel()
		_, b := setup(t)
		s := openKeyed(t, b, keyring(t, newKey(t)), nil)
		rotate(t, s, "a", secret.New("secret-of-a"))
		rotate(t, s, "b", secret.New("secret-of-b"))
		// Copy a's encrypted columns onto b's row.
		if _, err := s.pool.Exec(t.Context(), `
			UPDATE admin_secrets AS b SET kek_id = a.kek_id, wrapped_key = a.wrapped_key, nonce = a.nonce, ciphertext = a.ciphertext
			FROM admin_secrets AS a WHERE a.backend = 'a' AND b.backend = 'b'`); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.AdminSecrets(t.Context(), "b"); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("a's ciphertext on b's row: %v, want ErrDecrypt", err)
		}
		// Move a's whole row to backend b (its id kept).
		if _, err := s.pool.Exec(t.Context(), `DELETE FROM admin_secrets WHERE backend = 'b'`); err != nil {
			t.Fatal(err)
		}
		if _, err := s.pool.Exec(t.Context(), `UPDATE admin_secrets SET backend = 'b' WHERE backend = 'a'`); err != nil {
			t.Fatal(err)
		}
		_, _, err := s.AdminSecrets(t.Context(), "b")
		if !errors.Is(err, ErrDecrypt) || strings.Contains(err.Error(), "secret-of") {
			t.Fatalf("a's row moved to b: %v, want ErrDecrypt", err)
		}
		// Only the secret's own ciphertext: a data key and value swapped.
		rotate(t, s, "c", secret.New("secret-of-c"))
		if _, err := s.pool.Exec(t.Context(), `UPDATE admin_secrets SET ciphertext = wrapped_key WHERE backend = 'c'`); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.AdminSecrets(t.Context(), "c"); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("swapped columns: %v", err)
		}
	})

	t.Run("WrongKEKFailsClearly", func(t *testing.T) {
		t.Parallel()
		_, b := setup(t)
		k1, k2 := newKey(t), newKey(t)
		rotate(t, openKeyed(t, b, keyring(t, k1), nil), "pg", secret.New("pw-"+NewID()))
		s2 := openKeyed(t, b, keyring(t, k2), nil)
		_, _, err := s2.AdminSecrets(t.Context(), "pg")
		if !errors.Is(err, ErrUnknownKEK) || !strings.Contains(err.Error(), KEKID(k1)) || !strings.Contains(err.Error(), KEKID(k2)) {
			t.Fatalf("AdminSecrets with the wrong key: %v, want ErrUnknownKEK naming both ids", err)
		}
		// A row claiming the right id but wrapped by another key fails
		// authentication.
		if _, err := s2.pool.Exec(t.Context(), `UPDATE admin_secrets SET kek_id = $1`, KEKID(k2)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s2.AdminSecrets(t.Context(), "pg"); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("relabelled kek_id: %v, want ErrDecrypt", err)
		}
		// Without a keyring nothing is kept.
		s3 := openKeyed(t, b, nil, nil)
		if _, err := s3.BeginRotation(t.Context(), "pg", secret.New("x"), "a"); !errors.Is(err, ErrNoKEK) {
			t.Fatalf("BeginRotation without a keyring: %v", err)
		}
	})

	t.Run("RewrapThenOldKeyRemoved", func(t *testing.T) {
		t.Parallel()
		_, b := setup(t)
		k1, k2 := newKey(t), newKey(t)
		s1 := openKeyed(t, b, keyring(t, k1), nil)
		rotate(t, s1, "pg", secret.New("pg-pw"))
		rotate(t, s1, "redis", secret.New("redis-pw"))
		if _, err := s1.BeginRotation(t.Context(), "redis", secret.New("redis-candidate"), "a"); err != nil {
			t.Fatal(err)
		}
		var before []byte
		if err := s1.pool.QueryRow(t.Context(), `SELECT ciphertext FROM admin_secrets WHERE backend = 'pg'`).Scan(&before); err != nil {
			t.Fatal(err)
		}
		// The new key first, the old one still there.
		s2 := openKeyed(t, b, keyring(t, k2, k1), nil)
		res, err := s2.Rewrap(t.Context(), "alice")
		if err != nil || res.Rewrapped != 3 || res.Unchanged != 0 || res.KEKID != KEKID(k2) {
			t.Fatalf("Rewrap = %+v, %v", res, err)
		}
		res, err = s2.Rewrap(t.Context(), "alice")
		if err != nil || res.Rewrapped != 0 || res.Unchanged != 3 {
			t.Fatalf("second Rewrap = %+v, %v; want nothing to do", res, err)
		}
		var after []byte
		if err := s1.pool.QueryRow(t.Context(), `SELECT ciphertext FROM admin_secrets WHERE backend = 'pg'`).Scan(&after); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(before, after) {
			t.Fatal("rewrap changed a secret's ciphertext; only the data key wrap should change")
		}
		// The old key removed: everything still decrypts.
		s3 := openKeyed(t, b, keyring(t, k2), nil)
		if got := mustCurrent(t, s3, "pg"); got.Value.Reveal() != "pg-pw" || got.KEKID != KEKID(k2) {
			t.Fatalf("pg after rewrap: %+v", got)
		}
		cur, cand, err := s3.AdminSecrets(t.Context(), "redis")
		if err != nil || cur.Value.Reveal() != "redis-pw" || cand.Value.Reveal() != "redis-candidate" {
			t.Fatalf("redis after rewrap: %v %v %v", cur, cand, err)
		}
		if k := kinds(eventsOf(t, s3, "")); strings.Count(k, EventSecretsRewrapped) != 2 {
			t.Fatalf("events %s", k)
		}
	})

	t.Run("NoPlaintextInTheStoreOrLogs", func(t *testing.T) {
		t.Parallel()
		_, b := setup(t)
		logs := &syncBuffer{}
		s := openKeyed(t, b, keyring(t, newKey(t), newKey(t)), logs)
		pw := "plain-" + NewID()
		rotate(t, s, "pg", secret.New(pw))
		if _, err := s.BeginRotation(t.Context(), "pg", secret.New(pw+"-next"), "a"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Rewrap(t.Context(), "a"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Checkpoint(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n := grepDatabase(t, s, pw); n != 0 {
			t.Fatalf("the password is in %d column values of the store", n)
		}
		// The check itself finds what it looks for.
		if n := grepDatabase(t, s, "orders-pg-never"); n != 0 {
			t.Fatal("grepDatabase matched a string that is nowhere")
		}
		if n := grepDatabase(t, s, "pg"); n == 0 {
			t.Fatal("grepDatabase does not see the admin_secrets rows")
		}
		if strings.Contains(logs.String(), pw) {
			t.Fatal("the password is in the store's logs")
		}
	})

	t.Run("DownMigrationRefusesToDropSecrets", func(t *testing.T) {
		t.Parallel()
		_, b := setup(t)
		s := openKeyed(t, b, keyring(t, newKey(t)), nil)
		rotate(t, s, "pg", secret.New("only-copy"))
		cfg, err := pgx.ParseConfig(b.dsn)
		if err != nil {
			t.Fatal(err)
		}
		m, err := newMigrate(cfg, s.logger)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		// Down to 007 first: the migrations above it hold no secret.
		if err := m.Migrate(7); err != nil {
			t.Fatal(err)
		}
		err = m.Steps(-1)
		if err == nil || !strings.Contains(err.Error(), "admin_secrets still holds") {
			t.Fatalf("down migration with a stored secret: %v", err)
		}
		var n int
		if err := s.pool.QueryRow(t.Context(), `SELECT count(*) FROM admin_secrets`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("the secret is gone: %d %v", n, err)
		}
		// The refused step leaves the schema marked dirty at the version
		// below (the down ran in one transaction, so nothing changed);
		// mark it clean at 007 again, delete the row and migrate down.
		v, dirty, err := m.Version()
		if err != nil || !dirty {
			t.Fatalf("version %d dirty %v: %v", v, dirty, err)
		}
		if err := m.Force(int(v) + 1); err != nil {
			t.Fatal(err)
		}
		if _, err := s.pool.Exec(t.Context(), `DELETE FROM admin_secrets`); err != nil {
			t.Fatal(err)
		}
		if err := m.Steps(-1); err != nil {
			t.Fatalf("down migration without secrets: %v", err)
		}
		if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
			t.Fatal(err)
		}
	})
}

// grepDatabase counts the values of every text, jsonb and bytea column of
// every table in the store's schema that contain needle (as text, or as
// bytes in a bytea), as a dump would show them.
func grepDatabase(t *testing.T, s *Store, needle string) int {
	t.Helper()
	rows, err := s.pool.Query(t.Context(), `
		SELECT table_name, column_name, data_type FROM information_schema.columns
		WHERE table_schema = current_schema() AND data_type IN ('text', 'jsonb', 'bytea', 'character varying', 'json')`)
	if err != nil {
		t.Fatal(err)
	}
	type col struct{ table, column, typ string }
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (col, error) {
		var c col
		return c, r.Scan(&c.table, &c.column, &c.typ)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(cols) < 10 {
		t.Fatalf("only %d columns found", len(cols))
	}
	found := 0
	for _, c := range cols {
		q := `SELECT count(*) FROM ` + pgx.Identifier{c.table}.Sanitize() + ` WHERE `
		arg := any(needle)
		if c.typ == "bytea" {
			q += `position($1::bytea in ` + pgx.Identifier{c.column}.Sanitize() + `) > 0`
			arg = []byte(needle)
		} else {
			q += `strpos(` + pgx.Identifier{c.column}.Sanitize() + `::text, $1) > 0`
		}
		var n int
		if err := s.pool.QueryRow(t.Context(), q, arg).Scan(&n); err != nil {
			t.Fatalf("%s.%s: %v", c.table, c.column, err)
		}
		found += n
	}
	return found
}
