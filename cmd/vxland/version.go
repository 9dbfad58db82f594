package main

import "runtime/debug"

// version is set when linking: the Makefile passes
// -ldflags "-X main.version=$(git describe --tags --always --dirty)".
var version string

// versionString is the version --version prints and vxland_build_info
// carries: the linked-in one, or for a plain go build "devel" with the
// commit the go command stamped into the binary, if any.
func versionString() string {
	if version != "" {
		return version
	}
	v := "devel"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision":
			rev = s.Value[:min(len(s.Value), 12)]
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "-dirty"
		}
	}
	if rev != "" {
		v += "-" + rev + dirty
	}
	return v
}
