package flannel

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseNetworkConfig(t *testing.T) {
	for _, tc := range []struct {
		name, json string
		want       NetworkConfig
	}{
		{
			name: "defaults",
			json: `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`,
			want: NetworkConfig{Network: pfx("10.244.0.0/16"), SubnetLen: 24, SubnetMin: addr("10.244.1.0"), SubnetMax: addr("10.244.255.0"),
				Backend: BackendConfig{Type: "vxlan", VNI: 1, Port: 8472}},
		},
		{
			name: "everything set",
			json: `{"Network":"10.5.0.0/16","SubnetLen":26,"SubnetMin":"10.5.1.0","SubnetMax":"10.5.9.192",
				"Backend":{"Type":"vxlan","VNI":42,"Port":4789,"MTU":1400,"DirectRouting":true}}`,
			want: NetworkConfig{Network: pfx("10.5.0.0/16"), SubnetLen: 26, SubnetMin: addr("10.5.1.0"), SubnetMax: addr("10.5.9.192"),
				Backend: BackendConfig{Type: "vxlan", VNI: 42, Port: 4789, MTU: 1400, DirectRouting: true}},
		},
		{
			name: "small network gets four subnets",
			json: `{"Network":"10.0.0.0/26","Backend":{"Type":"vxlan","VNI":0}}`,
			want: NetworkConfig{Network: pfx("10.0.0.0/26"), SubnetLen: 28, SubnetMin: addr("10.0.0.16"), SubnetMax: addr("10.0.0.48"),
				Backend: BackendConfig{Type: "vxlan", VNI: 0, Port: 8472}},
		},
		{
			name: "dual stack: the IPv6 part is ignored, unknown fields too",
			json: `{"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Network":"10.244.0.0/16","Backend":{"Type":"vxlan"},"Future":1}`,
			want: NetworkConfig{Network: pfx("10.244.0.0/16"), SubnetLen: 24, SubnetMin: addr("10.244.1.0"), SubnetMax: addr("10.244.255.0"),
				Backend: BackendConfig{Type: "vxlan", VNI: 1, Port: 8472}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseNetworkConfig([]byte(tc.json))
			if err != nil {
				t.Fatal(err)
			}
			if *c != tc.want {
				t.Fatalf("got %+v\nwant %+v", *c, tc.want)
			}
		})
	}
}

func TestParseNetworkConfigRejects(t *testing.T) {
	for _, tc := range []struct{ json, want string }{
		{`not json`, "invalid"},
		{`{"Backend":{"Type":"vxlan"}}`, "no Network"},
		{`{"Network":"fd00::/48","Backend":{"Type":"vxlan"}}`, "not an IPv4"},
		{`{"Network":"10.244.0.0/16"}`, `"udp"`},
		{`{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`, `"host-gw"`},
		{`{"Network":"10.244.0.0/16","EnableIPv4":false,"Backend":{"Type":"vxlan"}}`, "EnableIPv4"},
		{`{"Network":"10.244.0.0/16","SubnetLen":31,"Backend":{"Type":"vxlan"}}`, "SubnetLen"},
		{`{"Network":"10.244.0.0/16","SubnetLen":17,"Backend":{"Type":"vxlan"}}`, "four subnets"},
		{`{"Network":"10.0.0.0/29","Backend":{"Type":"vxlan"}}`, "too small"},
		{`{"Network":"10.244.0.0/16","SubnetMin":"10.245.0.0","Backend":{"Type":"vxlan"}}`, "SubnetMin"},
		{`{"Network":"10.244.0.0/16","SubnetMax":"10.244.3.1","Backend":{"Type":"vxlan"}}`, "boundary"},
		{`{"Network":"10.244.0.0/16","SubnetMin":"10.244.9.0","SubnetMax":"10.244.3.0","Backend":{"Type":"vxlan"}}`, "above"},
		{`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":16777216}}`, "VNI"},
		{`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","Port":70000}}`, "Port"},
		{`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","MTU":20}}`, "MTU"},
	} {
		_, err := ParseNetworkConfig([]byte(tc.json))
		if err == nil || !errors.Is(err, errBadConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.json, err, tc.want)
		}
	}
}

func TestNetworkConfigContains(t *testing.T) {
	c, err := ParseNetworkConfig([]byte(`{"Network":"10.244.0.0/16","SubnetMax":"10.244.9.0","Backend":{"Type":"vxlan"}}`))
	if err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]bool{
		"10.244.1.0/24": true, "10.244.9.0/24": true,
		"10.244.0.0/24":  false, // the first subnet is not handed out
		"10.244.10.0/24": false, // above SubnetMax
		"10.244.1.0/25":  false, // wrong length
		"10.245.1.0/24":  false,
	} {
		if got := c.Contains(pfx(s)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", s, got, want)
		}
	}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

// FuzzParseNetworkConfig checks that any config that parses describes a
// usable range of subnets.
func FuzzParseNetworkConfig(f *testing.F) {
	f.Add(`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`)
	f.Add(`{"Network":"10.5.0.0/16","SubnetLen":26,"SubnetMin":"10.5.1.0","SubnetMax":"10.5.9.192","Backend":{"Type":"vxlan","VNI":42,"Port":4789,"MTU":1400}}`)
	f.Add(`{"Network":"10.0.0.0/26","Backend":{"Type":"vxlan"}}`)
	f.Add(`{"Network":"0.0.0.0/0","SubnetLen":30,"Backend":{"Type":"vxlan"}}`)
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseNetworkConfig([]byte(s))
		if err != nil {
			if !errors.Is(err, errBadConfig) {
				t.Fatalf("error %v does not wrap errBadConfig", err)
			}
			return
		}
		min, max := netip.PrefixFrom(c.SubnetMin, c.SubnetLen), netip.PrefixFrom(c.SubnetMax, c.SubnetLen)
		if !c.Contains(min) || !c.Contains(max) || c.SubnetMin.Compare(c.SubnetMax) > 0 {
			t.Fatalf("%s: range %s..%s /%d is not in the network %s", s, c.SubnetMin, c.SubnetMax, c.SubnetLen, c.Network)
		}
		if !c.Network.Contains(c.SubnetMax) || c.SubnetLen > 30 || c.SubnetLen < c.Network.Bits() {
			t.Fatalf("%s: parsed %+v", s, c)
		}
	})
}
