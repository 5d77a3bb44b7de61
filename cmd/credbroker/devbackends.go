package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/credbroker/credbroker/plugins"
)

// demoPrepareTimeout bounds each demo backend's Prepare.
const demoPrepareTimeout = 5 * time.Second

// devBackend is a demo backend `credbroker dev` adds to its config: one a
// driver of this binary declares (plugins.Metadata.Demo) and whose service
// answered.
type devBackend struct {
	plugin string // the driver's name; the backend and role are demo-<plugin>
	demo   plugins.DemoBackend
}

// devBackends prepares the demo backend of every driver that declares one,
// except those in skip (the dev config's own), and returns those whose
// service answered, with their variables set in this process's environment
// so the config's env: references resolve. One that does not answer is
// skipped with a note.
func devBackends(ctx context.Context, skip []string, note func(string)) []devBackend {
	var out []devBackend
	for _, d := range drivers {
		desc, ok := d.(plugins.Describer)
		if !ok {
			continue
		}
		demo := desc.Describe().Demo
		if demo == nil || demo.Prepare == nil || slices.Contains(skip, d.Name()) {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, demoPrepareTimeout)
		b, err := demo.Prepare(pctx)
		cancel()
		if err != nil {
			note(fmt.Sprintf("demo %s backend skipped: %v", d.Name(), plugins.Sanitize(err)))
			continue
		}
		for k, v := range b.Env {
			os.Setenv(k, v)
		}
		out = append(out, devBackend{plugin: d.Name(), demo: b})
	}
	return out
}

// name is the demo backend's and the demo role's name.
func (b devBackend) name() string { return "demo-" + b.plugin }

// backendYAML is the backend's entry under backends:.
func (b devBackend) backendYAML() string {
	return fmt.Sprintf(`  - name: %s
    plugin: %s
    environment: dev
    owner: you
    connection: %s
`, b.name(), b.plugin, oneLine(b.demo.Connection))
}

// roleYAML is the demo role's entry under roles:.
func (b devBackend) roleYAML() string {
	return fmt.Sprintf(`  - name: %s
    backend: %s
    owner: you
    default_ttl: 15m
    max_ttl: 1h
    %s: %s
`, b.name(), b.name(), b.plugin, oneLine(b.demo.Role))
}

// oneLine puts a flow mapping on the line of its key, as YAML folds it (a
// line break in a flow mapping, or in a quoted scalar in one, reads as one
// space): continuation lines would otherwise have to be indented deeper than
// the key, which a plugin cannot know.
func oneLine(flow string) string {
	lines := strings.Split(strings.TrimSpace(flow), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(slices.DeleteFunc(lines, func(l string) bool { return l == "" }), " ")
}
