package plugintest

import (
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/credbroker/credbroker/plugins"
)

// Decoder returns a [plugins.Decoder] for the YAML section src that decodes
// strictly (an unknown key is an error), as the broker does, for a plugin's
// ParseConnection and ParseRole in tests.
func Decoder(src string) plugins.Decoder {
	return func(v any) error {
		dec := yaml.NewDecoder(strings.NewReader(src))
		dec.KnownFields(true)
		return dec.Decode(v)
	}
}
