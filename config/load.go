package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// maxFileSize bounds what Load reads: a config file is small; a huge one is
// a mistake (or an attack on a config-push endpoint).
const maxFileSize = 4 << 20

// Load reads, parses and validates the file at path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, &FieldError{File: path, Msg: fmt.Sprintf("file is larger than %d bytes", maxFileSize)}
	}
	return Parse(path, data)
}

// Parse parses and validates data, naming it file in errors. Every problem
// found is reported, joined with errors.Join; each is a *FieldError.
func Parse(file string, data []byte) (*Config, error) {
	p := &problems{file: file, lines: map[string]int{}}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, syntaxError(file, err)
	}
	byLine := map[int]string{}
	if len(root.Content) > 0 {
		index(root.Content[0], "", p.lines, byLine)
	}

	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, syntaxError(file, err)
		}
		for _, m := range te.Errors {
			p.fromYAML(m, byLine)
		}
	}
	c := build(&f, p)
	if err := p.err(); err != nil {
		return nil, err
	}
	c.Source, c.Raw, c.Hash = file, data, hashOf(data)
	c.Spec.Hash = c.Hash
	return c, nil
}

// index records the line of every mapping key and sequence item by its
// dotted path (services[0].passive.interval), and the reverse.
func index(n *yaml.Node, path string, lines map[string]int, byLine map[int]string) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" { // merge key: its fields belong to this mapping
				index(v, path, lines, byLine)
				continue
			}
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			lines[p] = k.Line
			if _, taken := byLine[k.Line]; !taken {
				byLine[k.Line] = p
			}
			index(v, p, lines, byLine)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			lines[p] = item.Line
			if _, taken := byLine[item.Line]; !taken {
				byLine[item.Line] = p
			}
			index(item, p, lines, byLine)
		}
	case yaml.AliasNode:
		// Not followed: an alias may refer to its own ancestor, and the
		// aliased fields' lines belong to the anchor's place anyway.
	}
}

func syntaxError(file string, err error) error {
	msg := err.Error()
	msg = trimPrefix(msg, "yaml: ")
	line := 0
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	return &FieldError{File: file, Line: line, Msg: "YAML syntax: " + msg}
}

func trimPrefix(s, p string) string {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}
