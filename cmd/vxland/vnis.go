package main

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// vniList is the value of --vni: one VNI, or several, given by repeating
// the flag or separated by commas. One daemon serves them all on one set
// of sockets (overlay.Mux). It is no pflag.SliceValue: the --config file
// names one VNI with the key vni, and several in its section vnis, with
// their bridges and TAPs.
type vniList struct {
	vnis []uint64
	// set is false while vnis holds the default, which the first value
	// given replaces.
	set bool
}

func (l *vniList) String() string {
	s := make([]string, len(l.vnis))
	for i, v := range l.vnis {
		s[i] = strconv.FormatUint(v, 10)
	}
	return strings.Join(s, ",")
}

func (l *vniList) Set(v string) error {
	if !l.set {
		l.vnis, l.set = nil, true
	}
	return l.add(v)
}

func (l *vniList) Type() string { return "uint" }

// add appends the VNIs of v, separated by commas.
func (l *vniList) add(v string) error {
	for s := range strings.SplitSeq(v, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		l.vnis = append(l.vnis, n)
	}
	return nil
}

// vniPlane is the host setup of one VNI the daemon serves.
type vniPlane struct {
	VNI         uint32
	Bridge, TAP string
	// MTU is the VNI's overlay MTU; 0: --mtu.
	MTU int
	// Group is the multicast group the VNI floods to (--group); invalid:
	// it floods to its peers.
	Group netip.Addr
	// ControlSocket is the socket that answers for this VNI by default
	// (`vxland show --vni N` finds it).
	ControlSocket string
}

// checkVNIs checks the VNIs of --vni and returns their host setup. One
// VNI takes --bridge, --tap, --mtu and --control-socket, or the names the
// --config file's section vnis gives it; it returns nil then. With
// several, each VNI's bridge and TAP are the section's, else named for it
// (vxbr<VNI>, vxtap<VNI>); its control socket is named for its TAP, and
// --control-socket, when given, is one socket that answers for every VNI
// (`?vni=`).
func (r *rawFlags) checkVNIs() ([]vniPlane, error) {
	if err := r.checkVNI(); err != nil {
		return nil, err
	}
	vnis := r.vni.vnis
	sections := map[uint64]vniSection{}
	for _, s := range r.vniSections {
		sections[s.vni] = s
	}
	if len(vnis) == 1 {
		// The single VNI's names are checked with the rest.
		s := sections[vnis[0]]
		r.bridge, r.tap = cmp.Or(r.bridge, s.bridge), cmp.Or(r.tap, s.tap)
		if r.mtu == 0 {
			r.mtu = s.mtu
		}
		if r.group == "" && s.group.IsValid() {
			r.group = s.group.String()
		}
		return nil, nil
	}
	for _, f := range []struct{ flag, value string }{{"bridge", r.bridge}, {"tap", r.tap}} {
		if f.value != "" {
			return nil, flagErrorf(f.flag, "%q: with several --vni, each VNI's %s is named for it (%s<VNI>)", f.value, f.flag, map[string]string{"bridge": "vxbr", "tap": "vxtap"}[f.flag])
		}
	}
	if r.group != "" {
		return nil, flagErrorf("group", "%q: with several --vni, each VNI's group is the key group of its entry in the --config file's section vnis", r.group)
	}
	if r.mode == modeFlannel {
		return nil, flagErrorf("vni", "%s: flannel mode serves one VNI, the network config's", r.vni.String())
	}
	if len(vnis) > maxVNIs {
		return nil, flagErrorf("vni", "%d VNIs: at most %d per daemon", len(vnis), maxVNIs)
	}
	planes := make([]vniPlane, len(vnis))
	names := map[string]uint64{}
	for i, v := range vnis {
		if slices.Contains(vnis[:i], v) {
			return nil, flagErrorf("vni", "%d given twice", v)
		}
		s := sections[v]
		p := vniPlane{VNI: uint32(v), Bridge: cmp.Or(s.bridge, fmt.Sprintf("vxbr%d", v)), TAP: cmp.Or(s.tap, fmt.Sprintf("vxtap%d", v)), MTU: s.mtu, Group: s.group}
		p.ControlSocket = cmp.Or(r.controlSocket, "/run/vxland/"+p.TAP+".sock")
		for _, n := range []string{p.Bridge, p.TAP} {
			if err := checkIfName("vni", n); err != nil {
				return nil, err
			}
			if other, dup := names[n]; dup {
				return nil, flagErrorf("vni", "%d: its bridge or TAP %q is VNI %d's too", v, n, other)
			}
			names[n] = v
		}
		planes[i] = p
	}
	return planes, nil
}

// errNotGroup is the error of a --group that is not a multicast address.
var errNotGroup = errors.New("not a multicast group address (224.0.0.0/4 or ff00::/8)")

// parseGroup parses a multicast group of --group or of the section vnis.
func parseGroup(s string) (netip.Addr, error) {
	g, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || g.Zone() != "" || !g.Unmap().IsMulticast() {
		return netip.Addr{}, errNotGroup
	}
	return g.Unmap(), nil
}

// validateGroups checks the multicast groups of the VNIs (--group, or
// the section vnis): a VNI that floods to a group needs the interface to
// join it on and the prefixes its unknown senders are accepted from.
func (r *rawFlags) validateGroups(c *config) error {
	if r.group != "" {
		g, err := parseGroup(r.group)
		if err != nil {
			return flagErrorf("group", "%q: %v", r.group, err)
		}
		c.VNIs[0].Group = g
	}
	for _, p := range c.VNIs {
		g := p.Group
		switch {
		case !g.IsValid():
			continue
		case r.mode == modeFlannel:
			return flagErrorf("group", "%s: flannel mode floods nothing", g)
		case c.Iface == "":
			return flagErrorf("group", "%s needs --iface, the underlay interface to join it on", g)
		case len(c.Underlay) == 0:
			return flagErrorf("group", "%s needs --underlay-cidr: the group's members are not known in advance, and a sender is accepted (and learned from) when it is in that prefix", g)
		case c.LocalIP.IsValid() && g.Is4() != c.LocalIP.Is4():
			return flagErrorf("group", "%s: not the same address family as --local-ip %s", g, c.LocalIP)
		}
	}
	return nil
}
