package broker

import (
	"encoding"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/credbroker/credbroker/secret"
)

// FieldError is one problem in a config file, located by its path
// (`roles[1].max_ttl`) and, where known, its line.
type FieldError struct {
	Path string
	Line int
	Msg  string
}

func (e *FieldError) Error() string {
	switch {
	case e.Path == "":
		return e.Msg
	case e.Line > 0:
		return fmt.Sprintf("%s: %s (line %d)", e.Path, e.Msg, e.Line)
	default:
		return fmt.Sprintf("%s: %s", e.Path, e.Msg)
	}
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	refType      = reflect.TypeFor[secret.Ref]()
	nodeType     = reflect.TypeFor[yaml.Node]()
	textType     = reflect.TypeFor[encoding.TextUnmarshaler]()
	claimsType   = reflect.TypeFor[ClaimValues]()
)

// decodeStrict decodes node into out after checking every key and scalar
// against out's type, so that an unknown key, a wrong type or an inline secret
// is reported with its path. It returns every problem it finds, not the first,
// and still decodes everything that is well-formed, so that later validation
// can report its own problems too.
func decodeStrict(node *yaml.Node, out any, path string) []error {
	c := &checker{bad: map[*yaml.Node]bool{}}
	c.check(node, reflect.TypeOf(out).Elem(), path)
	if err := prune(node, c.bad).Decode(out); err != nil && len(c.errs) == 0 {
		return []error{&FieldError{Path: path, Line: node.Line, Msg: err.Error()}}
	}
	return c.errs
}

// checker collects problems and the nodes they were found in.
type checker struct {
	errs []error
	bad  map[*yaml.Node]bool
}

// prune returns a copy of n without the mapping entries and list items that
// hold a bad node.
func prune(n *yaml.Node, bad map[*yaml.Node]bool) *yaml.Node {
	if len(bad) == 0 || n == nil {
		return n
	}
	cp := *n
	cp.Content = nil
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if bad[n.Content[i]] || bad[n.Content[i+1]] {
				continue
			}
			cp.Content = append(cp.Content, n.Content[i], prune(n.Content[i+1], bad))
		}
	default:
		for _, c := range n.Content {
			if !bad[c] {
				cp.Content = append(cp.Content, prune(c, bad))
			}
		}
	}
	return &cp
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (c *checker) check(n *yaml.Node, t reflect.Type, path string) {
	if n == nil {
		return
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	fail := func(format string, a ...any) {
		c.errs = append(c.errs, &FieldError{Path: path, Line: n.Line, Msg: fmt.Sprintf(format, a...)})
		c.bad[n] = true
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == nodeType:
		return
	case t == refType:
		if n.Kind != yaml.ScalarNode {
			fail(`want a secret reference ("env:NAME" or "file:/path")`)
		} else if _, err := secret.ParseRef(n.Value); err != nil {
			fail("%v", err)
		}
		return
	case t == kekRefsType:
		if n.Kind == yaml.SequenceNode && len(n.Content) > 0 {
			for i, item := range n.Content {
				c.check(item, refType, fmt.Sprintf("%s[%d]", path, i))
			}
		} else {
			c.check(n, refType, path)
		}
		return
	case t == durationType:
		if n.Kind != yaml.ScalarNode {
			fail("want a duration such as 15m or 1h")
		} else if _, err := time.ParseDuration(n.Value); err != nil {
			fail("%q is not a duration: write it like 30s, 15m or 1h", n.Value)
		}
		return
	case t == claimsType:
		if err := new(ClaimValues).UnmarshalYAML(n); err != nil {
			fail("%v", err)
		}
		return
	case reflect.PointerTo(t).Implements(textType):
		if n.Kind != yaml.ScalarNode {
			fail("want a single value")
		} else if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			fail("%v", err)
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			fail("want a mapping of keys to values")
			return
		}
		fields, inline := structFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i].Value, n.Content[i+1]
			if f, ok := fields[key]; ok {
				c.check(val, f.Type, join(path, key))
				continue
			}
			if inline {
				continue // a plugin section; the owner of the inline map checks it
			}
			c.errs = append(c.errs, &FieldError{Path: join(path, key), Line: n.Content[i].Line,
				Msg: fmt.Sprintf("unknown key (known keys: %s)", strings.Join(slices.Sorted(maps.Keys(fields)), ", "))})
			c.bad[n.Content[i]] = true
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			fail("want a list")
			return
		}
		for i, item := range n.Content {
			c.check(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			fail("want a mapping of keys to values")
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			c.check(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))
		}
	case reflect.Interface:
		return
	default:
		if n.Kind != yaml.ScalarNode {
			fail("want a single %s value", t.Kind())
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			fail("%q is not a valid %s", n.Value, t.Kind())
		}
	}
}

// structFields returns t's fields by YAML key, and whether t has an inline map
// that collects the keys no field names.
func structFields(t reflect.Type) (map[string]reflect.StructField, bool) {
	fields := map[string]reflect.StructField{}
	inline := false
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			if f.Type.Kind() == reflect.Map {
				inline = true
				continue
			}
			sub, subInline := structFields(f.Type)
			for k, v := range sub {
				fields[k] = v
			}
			inline = inline || subInline
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = f
	}
	return fields, inline
}

// errorList joins errs into one error whose message has one problem a line.
func errorList(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return &ConfigError{Errs: errs}
}

// ConfigError holds every problem found in a config file.
type ConfigError struct {
	Errs []error
	// Warnings are what validation found besides, as [Config.Warnings]
	// would hold them, so that `config check` reports everything at once.
	// Error does not include them.
	Warnings []string
}

func (e *ConfigError) Error() string {
	lines := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		lines[i] = err.Error()
	}
	return fmt.Sprintf("invalid config (%d problems):\n  %s", len(e.Errs), strings.Join(lines, "\n  "))
}

// Unwrap returns the individual problems.
func (e *ConfigError) Unwrap() []error { return e.Errs }
