package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

var lineRef = regexp.MustCompile(`line (\d+): `)

// nameKeys rewrites the errors of decoding src into target (a pointer)
// to name the dotted key, so every config error names its key: yaml's
// "line N: cannot unmarshal ..." by the key at that line, and an error a
// value's UnmarshalText or UnmarshalYAML returned, which yaml.v3 passes on
// without a line (decode.go, fail), by the key that fails to decode alone.
func nameKeys(src []byte, target any, err error) string {
	var root yaml.Node
	if yaml.Unmarshal(src, &root) != nil {
		return err.Error()
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		if key := failingKey(&root, reflect.TypeOf(target).Elem(), ""); key != "" {
			return key + ": " + err.Error()
		}
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
		if strings.HasSuffix(m, "into time.Duration") {
			m += durationHint
		}
		msgs = append(msgs, m)
	}
	return strings.Join(msgs, "; ")
}

// durationHint follows yaml's "cannot unmarshal ... into time.Duration":
// a duration is Go's (time.ParseDuration), which has no day, while the
// command line takes "7d" (internal/when), so "1d" is an easy slip.
const durationHint = " (a duration is a number and a unit: ms, s, m or h, as 90s, 2m, 24h; there is no d)"

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

// failingKey returns the dotted key of the deepest node under n, of type
// t, that fails to decode on its own; "" if n decodes.
func failingKey(n *yaml.Node, t reflect.Type, key string) string {
	if n.Decode(reflect.New(t).Interface()) == nil {
		return ""
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) || reflect.PointerTo(t).Implements(yamlUnmarshaler) {
		return key // the value parses itself: its error is about all of it
	}
	switch {
	case n.Kind == yaml.DocumentNode && len(n.Content) == 1:
		return failingKey(n.Content[0], t, key)
	case n.Kind == yaml.AliasNode:
		return failingKey(n.Alias, t, key)
	case n.Kind == yaml.MappingNode && (t.Kind() == reflect.Struct || t.Kind() == reflect.Map):
		for i := 0; i+1 < len(n.Content); i += 2 {
			name := n.Content[i].Value
			ft, ok := fieldType(t, name)
			if !ok {
				continue // an unknown key: KnownFields reports it
			}
			if k := failingKey(n.Content[i+1], ft, dotted(key, name)); k != "" {
				return k
			}
		}
	case n.Kind == yaml.SequenceNode && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array):
		for i, item := range n.Content {
			if k := failingKey(item, t.Elem(), fmt.Sprintf("%s[%d]", key, i)); k != "" {
				return k
			}
		}
	}
	return key
}

var (
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	yamlUnmarshaler = reflect.TypeFor[yaml.Unmarshaler]()
)

// fieldType finds the type yaml.v3 fills from key name: the element of a
// map, or the field of a struct, looking into inlined structs.
func fieldType(t reflect.Type, name string) (reflect.Type, bool) {
	if t.Kind() == reflect.Map {
		return t.Elem(), true
	}
	for f := range t.Fields() {
		tag, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || tag == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			if ft, ok := fieldType(f.Type, name); ok {
				return ft, true
			}
			continue
		}
		if tag == "" {
			tag = strings.ToLower(f.Name) // yaml.v3's default key
		}
		if tag == name {
			return f.Type, true
		}
	}
	return nil, false
}

func dotted(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}
