package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// configFile is a --config file: a YAML mapping from long flag names to
// values, e.g.
//
//	vni: 42
//	peer: [10.0.0.2, 10.0.0.3]
//	offload: gso,gro
//
// Each value goes through the Set of the flag of the same name, exactly as
// a command-line value, and is validated with the flags afterwards, so
// that the file accepts what the flags accept and nothing else. The keys
// are checked against the flags themselves: a struct with KnownFields
// would be a second list of them to keep in step.
type configFile struct {
	path     string
	settings []fileSetting
	// applied holds the keys whose value the configuration took, by name,
	// with their line: a flag or VXLAND_* variable overrides the rest.
	applied map[string]int
}

type fileSetting struct {
	key, value string
	list       bool // the value was a YAML sequence, joined with commas
	line       int
}

// readConfigFile reads and decodes path. It knows nothing of the flags
// yet: apply checks the keys and values.
func readConfigFile(path string) (*configFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, flagErrorf("config", "%s: %v", path, errors.Unwrap(err))
	}
	cf := &configFile{path: path, applied: map[string]int{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, usagef("%s: %v", path, err)
	}
	if len(doc.Content) == 0 {
		return cf, nil // empty: no settings
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, usagef("%s:%d: want a mapping of flag names to values, such as \"vni: 42\"", path, top.Line)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, usagef("%s:%d: a key must be a flag name", path, k.Line)
		}
		if first, dup := seen[k.Value]; dup {
			return nil, usagef("%s:%d: key %q already set on line %d", path, k.Line, k.Value, first)
		}
		seen[k.Value] = k.Line
		s := fileSetting{key: k.Value, line: k.Line}
		switch v.Kind {
		case yaml.ScalarNode:
			if v.Tag != "!!null" {
				s.value = v.Value
			}
		case yaml.SequenceNode:
			items := make([]string, len(v.Content))
			for j, it := range v.Content {
				if it.Kind != yaml.ScalarNode {
					return nil, usagef("%s:%d: %s: want a list of values", path, it.Line, k.Value)
				}
				items[j] = it.Value
			}
			s.value, s.list = strings.Join(items, ","), true
		default:
			return nil, usagef("%s:%d: %s: want a value or a list of values", path, v.Line, k.Value)
		}
		cf.settings = append(cf.settings, s)
	}
	return cf, nil
}

// apply sets every flag the file names that neither the command line nor
// the environment set.
func (cf *configFile) apply(fs *pflag.FlagSet) error {
	for _, s := range cf.settings {
		f := fs.Lookup(s.key)
		switch {
		case f == nil:
			return usagef("%s:%d: unknown key %q (the keys are the long flag names, such as vni)", cf.path, s.line, s.key)
		case s.key == "config":
			return usagef("%s:%d: key %q: a configuration file cannot name another", cf.path, s.line, s.key)
		case s.key == "version":
			// As VXLAND_VERSION: an action, which a file would not take.
			return usagef("%s:%d: key %q: an action, not a setting", cf.path, s.line, s.key)
		case f.Changed:
			continue
		}
		if _, ok := f.Value.(pflag.SliceValue); s.list && !ok {
			return usagef("%s:%d: %s: want one value, not a list", cf.path, s.line, s.key)
		}
		if err := fs.Set(s.key, s.value); err != nil {
			return usagef("%s:%d: %s %q: %v", cf.path, s.line, s.key, s.value, errors.Unwrap(err))
		}
		cf.applied[s.key] = s.line
	}
	return nil
}

// blame returns err, a validation error, naming the key and the place in
// the file when the value it is about came from there.
func (cf *configFile) blame(err error) error {
	var ue *usageError
	if cf == nil || !errors.As(err, &ue) || ue.flag == "" {
		return err
	}
	line, ok := cf.applied[ue.flag]
	if !ok {
		return err
	}
	return &usageError{msg: fmt.Sprintf("%s:%d: %s %s", cf.path, line, ue.flag, ue.detail), flag: ue.flag, detail: ue.detail}
}
