package external

import (
	"go.yaml.in/yaml/v3"

	"github.com/credbroker/credbroker/plugins"
)

// section returns the YAML of the configuration section decode decodes:
// nil when the section is missing. Aliases are expanded, since the anchors
// they name may lie outside the section.
func section(decode plugins.Decoder) ([]byte, error) {
	if decode == nil {
		return nil, nil
	}
	var node yaml.Node
	if err := decode(&node); err != nil {
		return nil, err
	}
	if node.Kind == 0 {
		return nil, nil
	}
	return yaml.Marshal(expand(&node))
}

// expand returns a copy of n with every alias replaced by a copy of what
// it names, and no anchors.
func expand(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	cp := *n
	cp.Anchor = ""
	cp.Content = make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		cp.Content[i] = expand(c)
	}
	return &cp
}
