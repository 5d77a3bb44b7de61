package sdk

import (
	"bytes"
	"errors"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/credbroker/credbroker/plugins"
)

// decoder returns a strict decoder for one configuration section, or nil
// when the section is empty (missing), as the broker hands a driver nil for
// a missing section.
func decoder(src []byte) plugins.Decoder {
	if len(bytes.TrimSpace(src)) == 0 {
		return nil
	}
	return func(v any) error {
		dec := yaml.NewDecoder(bytes.NewReader(src))
		dec.KnownFields(true)
		return relocate(dec.Decode(v))
	}
}

// yamlLine matches the position yaml.v3 puts before each problem. It counts
// lines of the section the broker sent, not of the broker's config file, so
// it would mislead; the broker prefixes the section's path instead.
var yamlLine = regexp.MustCompile(`^line \d+: `)

// relocate drops yaml.v3's line numbers from a decoding error, one problem
// a line.
func relocate(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	errs := make([]error, len(te.Errors))
	for i, msg := range te.Errors {
		errs[i] = errors.New(yamlLine.ReplaceAllString(msg, ""))
	}
	return errors.Join(errs...)
}

// problems splits a driver's validation error into one problem a line, as
// the broker reports them.
func problems(err error) []string {
	var out []string
	for line := range strings.Lines(err.Error()) {
		if line = strings.TrimRight(line, "\n"); strings.TrimSpace(line) != "" {
			out = append(out, line)
		}
	}
	return out
}
