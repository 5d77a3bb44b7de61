package plugintest_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/credbroker/credbroker/plugins/plugintest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestExample runs the example's conformance test, so the example is known
// to work.
func TestExample(t *testing.T) {
	t.Parallel()
	testConformance(t)
}

func TestNewTestDatabase(t *testing.T) {
	t.Parallel()
	admin := plugintest.PostgresURL(t)
	var name string
	t.Run("Create", func(t *testing.T) {
		dbURL := plugintest.NewTestDatabase(t, admin)
		conn, err := pgx.Connect(t.Context(), dbURL)
		if err != nil {
			t.Fatal(err)
		}
		// A session left open must not stop the drop.
		if err := conn.QueryRow(t.Context(), "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(name, "cbtest_") || !strings.HasSuffix(dbURL, "/"+name+"?sslmode=disable") {
			t.Errorf("database %q at %s", name, dbURL)
		}
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
	})
	conn, err := pgx.Connect(t.Context(), admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("database %s still exists after its test ended", name)
	}
}

// TestServiceURL covers the answers that need no Docker: a service that
// answers, and one that does not, which skips (or fails, in CI).
func TestServiceURL(t *testing.T) {
	ping := func(answers bool) func(context.Context, string) error {
		return func(context.Context, string) error {
			if answers {
				return nil
			}
			return context.DeadlineExceeded
		}
	}
	t.Run("Answers", func(t *testing.T) {
		t.Setenv("CREDBROKER_TEST_THING_URL", "thing://from-env")
		if got := plugintest.ServiceURL(t, "thing", "CREDBROKER_TEST_THING_URL", "thing://default", ping(true)); got != "thing://from-env" {
			t.Errorf("ServiceURL = %q, want the URL from the environment", got)
		}
	})
	t.Run("Default", func(t *testing.T) {
		t.Setenv("CREDBROKER_TEST_THING_URL", "")
		if got := plugintest.ServiceURL(t, "thing", "CREDBROKER_TEST_THING_URL", "thing://default", ping(true)); got != "thing://default" {
			t.Errorf("ServiceURL = %q, want the default", got)
		}
	})
	for _, tt := range []struct {
		name, require string
		want          string
	}{
		{"SilentSkips", "", "skip"},
		{"RequiredFails", "1", "fail"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(plugintest.RequireServicesEnv, tt.require)
			rec := &recorder{TB: t}
			done := make(chan struct{})
			go func() { // Skip and Fatal end the goroutine they run in.
				defer close(done)
				plugintest.ServiceURL(rec, "thing", "CREDBROKER_TEST_THING_URL", "thing://user:hunter2@nowhere", ping(false))
			}()
			<-done
			if rec.outcome != tt.want {
				t.Fatalf("outcome %q, want %q (%s)", rec.outcome, tt.want, rec.msg)
			}
			if !strings.Contains(rec.msg, "CREDBROKER_TEST_THING_URL") || strings.Contains(rec.msg, "hunter2") {
				t.Errorf("message %q should name the variable and hide the password", rec.msg)
			}
		})
	}
}

// recorder stands in for a testing.TB whose Skip and Fatal are observed, not
// acted on.
type recorder struct {
	testing.TB
	outcome, msg string
}

func (r *recorder) Helper() {}

func (r *recorder) Skipf(format string, args ...any) {
	r.outcome, r.msg = "skip", fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.outcome, r.msg = "fail", fmt.Sprintf(format, args...)
	runtime.Goexit()
}
