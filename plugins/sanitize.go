package plugins

import (
	"errors"
	"regexp"
	"strings"

	"github.com/credbroker/credbroker/secret"
)

// dsnPassword matches the password in "scheme://user:password@host", in
// go-sql-driver DSNs ("user:password@tcp(host)/"), and in key=value DSNs and
// SQL ("password=…", "PASSWORD '…'").
var dsnPassword = regexp.MustCompile(`(?i)(://[^:/@\s]*:)[^@\s]+(@)|(password\s*=\s*)('[^']*'|"[^"]*"|\S+)|(password\s+)('[^']*'|"[^"]*")|((?:^|[\s"'(])[^:/@\s"'(]*:)[^@\s]+(@(?:tcp|unix|tcp6)?\()`)

// Sanitize returns err with every given secret and anything shaped like a
// password in a DSN or SQL replaced by [secret.Redacted]. The result still
// matches the original with errors.Is and errors.As. Sanitize(nil) is nil.
func Sanitize(err error, secrets ...secret.Value) error {
	if err == nil {
		return nil
	}
	msg := SanitizeString(err.Error(), secrets...)
	if msg == err.Error() {
		return err
	}
	return &sanitized{msg: msg, err: err}
}

// SanitizeString applies the redaction of [Sanitize] to s.
func SanitizeString(s string, secrets ...secret.Value) string {
	for _, v := range secrets {
		if p := v.Reveal(); p != "" {
			s = strings.ReplaceAll(s, p, secret.Redacted)
		}
	}
	return dsnPassword.ReplaceAllStringFunc(s, func(m string) string {
		sub := dsnPassword.FindStringSubmatch(m)
		switch {
		case sub[1] != "":
			return sub[1] + secret.Redacted + sub[2]
		case sub[3] != "":
			return sub[3] + secret.Redacted
		case sub[5] != "":
			return sub[5] + secret.Redacted
		default:
			return sub[7] + secret.Redacted + sub[8]
		}
	})
}

type sanitized struct {
	msg string
	err error
}

func (s *sanitized) Error() string { return s.msg }

// Unwrap keeps errors.Is and errors.As working through the redaction. The
// wrapped error's own text is never printed by this type.
func (s *sanitized) Unwrap() error { return s.err }

var _ interface{ Unwrap() error } = (*sanitized)(nil)

// IsUnavailable reports whether err says the backend could not be reached.
func IsUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }
