package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/vxland/vxland/encap"
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
	// vnis is the section vnis: the VNIs to serve, each with its bridge,
	// TAP and MTU; vnisLine is its line.
	vnis     []vniSection
	vnisLine int
}

// vniSection is one entry of a --config file's section vnis:
//
//	vnis:
//	  - {vni: 42, bridge: br-blue, tap: tap-blue, mtu: 1400}
//	  - {vni: 43, group: 239.1.1.43}
//
// An empty name or MTU takes the default (vxbr<VNI>, vxtap<VNI>, --mtu);
// without group the VNI floods to its peers (--group).
type vniSection struct {
	vni         uint64
	bridge, tap string
	mtu         int
	group       netip.Addr
	line        int
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
		if k.Value == vnisKey {
			if cf.vnis, err = parseVNISection(path, v); err != nil {
				return nil, err
			}
			cf.vnisLine = k.Line
			continue
		}
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

// vnisKey is the section of the VNIs to serve; it is no flag.
const vnisKey = "vnis"

// parseVNISection reads the section vnis, a list of mappings.
func parseVNISection(path string, v *yaml.Node) ([]vniSection, error) {
	if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
		return nil, usagef("%s:%d: %s: want a list of VNIs, such as - {vni: 42, bridge: br42, tap: tap42, mtu: 1450}", path, v.Line, vnisKey)
	}
	var out []vniSection
	for _, item := range v.Content {
		if item.Kind != yaml.MappingNode {
			return nil, usagef("%s:%d: %s: want a mapping with the keys vni, bridge, tap, mtu and group", path, item.Line, vnisKey)
		}
		sec := vniSection{line: item.Line}
		hasVNI := false
		for i := 0; i+1 < len(item.Content); i += 2 {
			k, val := item.Content[i], item.Content[i+1]
			bad := func(want string) error {
				return usagef("%s:%d: %s: %s %q: %s", path, val.Line, vnisKey, k.Value, val.Value, want)
			}
			if val.Kind != yaml.ScalarNode {
				return nil, bad("want one value")
			}
			switch k.Value {
			case "vni":
				n, err := strconv.ParseUint(val.Value, 10, 64)
				if err != nil || n > encap.MaxVNI {
					return nil, bad(fmt.Sprintf("a VNI is 24 bits, 0 to %d", encap.MaxVNI))
				}
				sec.vni, hasVNI = n, true
			case "bridge":
				sec.bridge = val.Value
			case "tap":
				sec.tap = val.Value
			case "mtu":
				n, err := strconv.Atoi(val.Value)
				if err != nil || n < 68 || n > 65535-encap.OverheadIPv6 {
					return nil, bad(fmt.Sprintf("must be 68 to %d", 65535-encap.OverheadIPv6))
				}
				sec.mtu = n
			case "group":
				g, err := parseGroup(val.Value)
				if err != nil {
					return nil, bad(err.Error())
				}
				sec.group = g
			default:
				return nil, usagef("%s:%d: %s: unknown key %q (the keys are vni, bridge, tap, mtu and group)", path, k.Line, vnisKey, k.Value)
			}
		}
		if !hasVNI {
			return nil, usagef("%s:%d: %s: an entry without vni", path, item.Line, vnisKey)
		}
		out = append(out, sec)
	}
	return out, nil
}

// apply sets every flag the file names that neither the command line nor
// the environment set; the section vnis sets --vni.
func (cf *configFile) apply(fs *pflag.FlagSet) error {
	if len(cf.vnis) > 0 {
		if _, dup := cf.applied["vni"]; dup || cf.has("vni") {
			return usagef("%s:%d: %s: the key vni names the VNI too; keep one of them", cf.path, cf.vnisLine, vnisKey)
		}
		if !fs.Changed("vni") {
			vnis := make([]string, len(cf.vnis))
			for i, s := range cf.vnis {
				vnis[i] = strconv.FormatUint(s.vni, 10)
			}
			if err := fs.Set("vni", strings.Join(vnis, ",")); err != nil {
				return usagef("%s:%d: %s: %v", cf.path, cf.vnisLine, vnisKey, err)
			}
			cf.applied["vni"] = cf.vnisLine
		}
	}
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

// has reports whether the file sets key.
func (cf *configFile) has(key string) bool {
	for _, s := range cf.settings {
		if s.key == key {
			return true
		}
	}
	return false
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
