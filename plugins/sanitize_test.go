package plugins_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/secret"
)

func TestSanitize(t *testing.T) {
	t.Parallel()
	const pw = "s3cr3t-Pa55"
	tests := map[string]struct {
		in   string
		keep string // a part that must survive
	}{
		"URL":            {in: "dial postgres://admin:" + pw + "@db:5432/orders: refused", keep: "postgres://admin:"},
		"KeyValue":       {in: "connect host=db user=admin password=" + pw + " sslmode=disable", keep: "sslmode=disable"},
		"KeyValueQuoted": {in: "connect password='" + pw + "' host=db", keep: "host=db"},
		"SQL":            {in: "syntax error at CREATE ROLE x PASSWORD '" + pw + "'", keep: "CREATE ROLE x"},
		"MySQLDSN":       {in: "open root:" + pw + "@tcp(127.0.0.1:3306)/: refused", keep: "@tcp(127.0.0.1:3306)"},
		"MySQLDSNQuoted": {in: `parse "root:` + pw + `@unix(/run/mysqld.sock)/db"`, keep: "unix(/run/mysqld.sock)"},
		"Given":          {in: "the password " + pw + " was rejected", keep: "was rejected"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			base := errors.New(tc.in)
			err := plugins.Sanitize(fmt.Errorf("backend: %w", base), secret.New(pw))
			if strings.Contains(err.Error(), pw) {
				t.Errorf("password survived: %s", err)
			}
			if !strings.Contains(err.Error(), tc.keep) || !strings.Contains(err.Error(), secret.Redacted) {
				t.Errorf("redacted too much or nothing: %s", err)
			}
			if !errors.Is(err, base) {
				t.Error("errors.Is no longer finds the original error")
			}
		})
	}
	if plugins.Sanitize(nil) != nil {
		t.Error("Sanitize(nil) != nil")
	}
	plain := errors.New("role cb_x does not exist")
	if got := plugins.Sanitize(plain); got != plain {
		t.Errorf("an error with nothing to redact was rewrapped: %v", got)
	}
}
