package broker

import (
	"fmt"
	"reflect"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/credbroker/credbroker/secret"
)

// KEKRefs are the references of the store's key-encryption keys, newest
// first: `store.kek: file:/etc/credbroker/kek` or, while one is rotated,
// `store.kek: [file:/etc/credbroker/kek-new, file:/etc/credbroker/kek-old]`.
// The first wraps every data key written; the others only unwrap what they
// wrapped until `credbroker admin rewrap` has moved everything to the first.
type KEKRefs []secret.Ref

var kekRefsType = reflect.TypeFor[KEKRefs]()

// UnmarshalYAML accepts one reference or a list of them.
func (k *KEKRefs) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		var r secret.Ref
		if err := r.UnmarshalText([]byte(n.Value)); err != nil {
			return err
		}
		*k = KEKRefs{r}
		return nil
	case yaml.SequenceNode:
		var refs []secret.Ref
		if err := n.Decode(&refs); err != nil {
			return err
		}
		*k = refs
		return nil
	default:
		return fmt.Errorf(`want a secret reference ("file:/path" or "env:NAME") or a list of them, newest first`)
	}
}

// RotateConfig is a backend's `connection.rotate:` section: the broker
// rotates the backend's admin password on its own. It is taken out of the
// connection section before the plugin decodes the rest.
type RotateConfig struct {
	// Period is how old the admin password may get before the broker
	// rotates it; required, at least 1h. The first rotation happens at
	// start when the broker has never rotated the backend.
	Period time.Duration `yaml:"period"`
}

// rotateKey is the key of RotateConfig in a backend's connection section.
const rotateKey = "rotate"

// takeRotate removes the `rotate:` entry from a connection mapping and
// returns its value (nil when there is none), so the plugin, which decodes
// the connection strictly, never sees it.
func takeRotate(conn *yaml.Node) *yaml.Node {
	if conn.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(conn.Content); i += 2 {
		if conn.Content[i].Value == rotateKey {
			val := conn.Content[i+1]
			conn.Content = append(conn.Content[:i:i], conn.Content[i+2:]...)
			return val
		}
	}
	return nil
}

// validateRotate decodes and checks a backend's connection.rotate.
func (c *validation) validateRotate(b *BackendConfig, path string) {
	node := takeRotate(&b.Connection)
	if node == nil {
		return
	}
	path += ".connection." + rotateKey
	var rc RotateConfig
	if errs := decodeStrict(node, &rc, path); len(errs) > 0 {
		c.errs = append(c.errs, errs...)
		return
	}
	switch {
	case rc.Period == 0:
		c.add(path+".period", "required: how old the admin password may get, e.g. 720h")
	case rc.Period < time.Hour:
		c.add(path+".period", "%s: at least 1h", rc.Period)
	}
	if len(c.Store.KEK) == 0 {
		c.add(path, "needs store.kek: the rotated admin password is kept in the store, encrypted, and only the broker knows it; "+
			"set store.kek to a reference to 32 random bytes (e.g. file:/etc/credbroker/kek holding `head -c 32 /dev/urandom | base64`)")
	}
	b.Rotate = &rc
}
