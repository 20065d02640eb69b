package config

import (
	"errors"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

var lineRef = regexp.MustCompile(`line (\d+): `)

// nameKeys rewrites yaml's "line N: cannot unmarshal ..." errors to name
// the dotted key at that line too, so every config error names its key.
func nameKeys(src []byte, err error) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err.Error()
	}
	var root yaml.Node
	if yaml.Unmarshal(src, &root) != nil {
		return err.Error()
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, m := range te.Errors {
		if sub := lineRef.FindStringSubmatch(m); sub != nil {
			line, _ := strconv.Atoi(sub[1])
			if key := keyAtLine(&root, line, ""); key != "" {
				m = key + ": " + m
			}
		}
		msgs = append(msgs, m)
	}
	return strings.Join(msgs, "; ")
}

// keyAtLine finds the dotted path of the mapping key on line.
func keyAtLine(n *yaml.Node, line int, prefix string) string {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if k := keyAtLine(c, line, prefix); k != "" {
				return k
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			name := n.Content[i].Value
			if prefix != "" {
				name = prefix + "." + name
			}
			if n.Content[i].Line == line {
				return name
			}
			if k := keyAtLine(n.Content[i+1], line, name); k != "" {
				return k
			}
		}
	}
	return ""
}
