package flannel

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// DefaultSubnetFile is where flannel writes, and its CNI plugin reads,
// the node's subnet.
const DefaultSubnetFile = "/run/flannel/subnet.env"

// SubnetEnv is the content of subnet.env.
type SubnetEnv struct {
	Network netip.Prefix
	Subnet  netip.Prefix // the node's subnet (network address)
	MTU     int
	// IPMasq is always false: vxland does not masquerade traffic that
	// leaves the flannel network.
	IPMasq bool
}

// Marshal returns the file as flannel writes it. FLANNEL_SUBNET is the
// subnet's first host address with the subnet's length (10.244.1.1/24):
// the CNI plugin gives it to the pod bridge.
func (e SubnetEnv) Marshal() []byte {
	first := netip.PrefixFrom(e.Subnet.Addr().Next(), e.Subnet.Bits())
	return fmt.Appendf(nil, "FLANNEL_NETWORK=%s\nFLANNEL_SUBNET=%s\nFLANNEL_MTU=%d\nFLANNEL_IPMASQ=%t\n",
		e.Network, first, e.MTU, e.IPMasq)
}

// WriteSubnetEnv writes e to path atomically: readers see the old file or
// the new one, never a part. The directory is created if missing.
func WriteSubnetEnv(path string, e SubnetEnv) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("subnet file %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("subnet file %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(e.Marshal())
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("subnet file %s: %w", path, err)
	}
	return nil
}

// ReadPreviousSubnet returns the subnet recorded in an existing subnet.env
// (FLANNEL_SUBNET, as a network address), so that a node that lost its
// lease asks for the same subnet again. A missing or unreadable file
// gives an invalid prefix and no error; an unparsable value is an error.
func ReadPreviousSubnet(path string) (netip.Prefix, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return netip.Prefix{}, nil
	}
	p, err := previousSubnet(b)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("subnet file %s: %w", path, err)
	}
	return p, nil
}

// previousSubnet reads FLANNEL_SUBNET from the content of a subnet.env:
// the first such line counts; none gives an invalid prefix.
func previousSubnet(b []byte) (netip.Prefix, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "FLANNEL_SUBNET=")
		if !ok {
			continue
		}
		p, err := netip.ParsePrefix(v)
		if err != nil || !p.Addr().Is4() {
			return netip.Prefix{}, fmt.Errorf("FLANNEL_SUBNET=%q is not an IPv4 CIDR", v)
		}
		return p.Masked(), nil
	}
	return netip.Prefix{}, nil
}
