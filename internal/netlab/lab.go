package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// netnsDir is where "ip netns" keeps the bind mounts that name namespaces
// (NETNS_RUN_DIR in iproute2).
const netnsDir = "/var/run/netns"

// closeGrace is how long Close waits after SIGTERM before it sends SIGKILL.
const closeGrace = 3 * time.Second

// labSeq numbers the labs of this process, so that parallel tests using the
// same prefix get distinct namespace names.
var labSeq atomic.Uint64

// Lab owns the namespaces and processes created through it. Close removes
// them all. A Lab is safe for concurrent use.
type Lab struct {
	prefix string // "<prefix><pid>-<seq>-", prepended to every namespace name
	ip     string // path of ip(8)

	mu         sync.Mutex
	closed     bool
	namespaces []*NS
	procs      []*Process
}

// NS is a network namespace created by a Lab.
type NS struct {
	// Name is the full namespace name, as shown by "ip netns list".
	Name string

	lab *Lab
}

// Check reports why network namespaces cannot be built here (not Linux, not
// root, no ip(8), or "ip netns add" refused), or nil if they can. The answer
// is computed once per process by creating and deleting a probe namespace.
func Check() error { return checkOnce() }

var checkOnce = sync.OnceValue(func() error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("netlab: network namespaces need Linux, not %s: %w", runtime.GOOS, errors.ErrUnsupported)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("netlab: creating network namespaces needs root (euid is %d)", os.Geteuid())
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return fmt.Errorf("netlab: iproute2 is needed: %w", err)
	}
	probe := fmt.Sprintf("vxprobe%d", os.Getpid())
	if _, err := runCmd(exec.Command(ip, "netns", "add", probe)); err != nil {
		return fmt.Errorf("netlab: cannot create network namespaces: %w", err)
	}
	if _, err := runCmd(exec.Command(ip, "netns", "delete", probe)); err != nil {
		return fmt.Errorf("netlab: cannot delete probe namespace: %w", err)
	}
	return nil
})

// New returns an empty lab whose namespace names start with prefix, the PID
// and a lab number: New("vxt") names namespace "h1" "vxt12345-1-h1". The
// caller must Close it.
func New(prefix string) (*Lab, error) {
	if !validName(prefix) {
		return nil, fmt.Errorf("netlab: invalid prefix %q: use letters, digits, '-', '_' or '.'", prefix)
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return nil, fmt.Errorf("netlab: iproute2 is needed: %w", err)
	}
	return &Lab{
		prefix: fmt.Sprintf("%s%d-%d-", prefix, os.Getpid(), labSeq.Add(1)),
		ip:     ip,
	}, nil
}

// NewForTest returns a lab that is closed when t and its subtests finish.
// It skips t when namespaces cannot be built here (see Check), and when t
// fails it logs the output of the processes started through the lab.
func NewForTest(t testing.TB) *Lab {
	t.Helper()
	if err := Check(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	l, err := New("vxt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			l.logOutputs(t)
		}
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

func (l *Lab) logOutputs(t testing.TB) {
	l.mu.Lock()
	procs := slices.Clone(l.procs)
	l.mu.Unlock()
	for _, p := range procs {
		if p.out != nil {
			t.Logf("output of %q in %s:\n%s", p.Cmd.Args[4:], p.NS.Name, p.Output())
		}
	}
}

// Namespace creates namespace prefix+name and brings its loopback up.
func (l *Lab) Namespace(name string) (*NS, error) {
	if !validName(name) {
		return nil, fmt.Errorf("netlab: invalid namespace name %q: use letters, digits, '-', '_' or '.'", name)
	}
	n := &NS{Name: l.prefix + name, lab: l}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, fmt.Errorf("netlab: namespace %s: lab is closed", n.Name)
	}
	if _, err := os.Stat(n.Path()); err == nil {
		return nil, fmt.Errorf("netlab: namespace %s already exists (left by a crashed run with the same pid, or created twice); remove it with: ip netns delete %s", n.Name, n.Name)
	}
	if _, err := runCmd(exec.Command(l.ip, "netns", "add", n.Name)); err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	l.namespaces = append(l.namespaces, n)
	if err := n.ipCmd("link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	return n, nil
}

// Close stops the processes started through the lab (SIGTERM to each one's
// process group, SIGKILL after a grace period of a few seconds, then wait)
// and deletes the lab's namespaces. Calling Close again does nothing.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	procs, namespaces := l.procs, l.namespaces
	l.mu.Unlock()

	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { p.Stop(closeGrace) })
	}
	wg.Wait()

	var errs []error
	for _, n := range slices.Backward(namespaces) {
		if _, err := runCmd(exec.Command(l.ip, "netns", "delete", n.Name)); err != nil {
			errs = append(errs, fmt.Errorf("netlab: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Veth creates a veth pair with end aIf in a and end bIf in b, both up.
// The pair is created inside a with its peer placed directly in b.
func (l *Lab) Veth(a *NS, aIf string, b *NS, bIf string) error {
	if err := checkIfNames(aIf, bIf); err != nil {
		return err
	}
	if err := a.ipCmd("link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", b.Name); err != nil {
		return err
	}
	if err := a.ipCmd("link", "set", aIf, "up"); err != nil {
		return err
	}
	return b.ipCmd("link", "set", bIf, "up")
}

// Container creates namespace name holding interface "eth0" with address
// cidr, whose veth peer hostIf is a port of bridge br in host; all up.
// An mtu above zero is set on eth0 only, as a container runtime would; the
// host side keeps its default.
func (l *Lab) Container(host *NS, br, hostIf, name, cidr string, mtu int) (*NS, error) {
	c, err := l.Namespace(name)
	if err != nil {
		return nil, err
	}
	if err := l.Veth(host, hostIf, c, "eth0"); err != nil {
		return nil, err
	}
	if err := host.SetMaster(hostIf, br); err != nil {
		return nil, err
	}
	if mtu > 0 {
		if err := c.ipCmd("link", "set", "eth0", "mtu", fmt.Sprint(mtu)); err != nil {
			return nil, err
		}
	}
	if err := c.Addr("eth0", cidr); err != nil {
		return nil, err
	}
	return c, nil
}

// Command returns an unstarted "ip netns exec" command running args in n,
// for callers that want to set Stdout, Env and so on before StartCmd or Run.
func (n *NS) Command(args ...string) *exec.Cmd {
	return exec.Command(n.lab.ip, append([]string{"netns", "exec", n.Name}, args...)...)
}

// Run runs args in n and returns the combined output. The error names the
// command and includes its output.
func (n *NS) Run(args ...string) (string, error) {
	return runCmd(n.Command(args...))
}

// MustRun is Run that fails t on error.
func (n *NS) MustRun(t testing.TB, args ...string) string {
	t.Helper()
	out, err := n.Run(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Addr adds address cidr ("10.0.0.1/24", "fd00::1/64") to ifname and brings
// the link up. IPv6 addresses skip duplicate address detection so that they
// are usable at once.
func (n *NS) Addr(ifname, cidr string) error {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return fmt.Errorf("netlab: address for %s in %s: %w", ifname, n.Name, err)
	}
	args := []string{"addr", "add", p.String(), "dev", ifname}
	if p.Addr().Is6() {
		args = append(args, "nodad")
	}
	if err := n.ipCmd(args...); err != nil {
		return err
	}
	return n.ipCmd("link", "set", ifname, "up")
}

// Bridge creates bridge name in n and brings it up. STP is off, so ports
// forward as soon as they are up.
func (n *NS) Bridge(name string) error {
	if err := checkIfNames(name); err != nil {
		return err
	}
	if err := n.ipCmd("link", "add", name, "type", "bridge"); err != nil {
		return err
	}
	return n.ipCmd("link", "set", name, "up")
}

// SetMaster makes ifname a port of bridge and brings it up.
func (n *NS) SetMaster(ifname, bridge string) error {
	if err := n.ipCmd("link", "set", ifname, "master", bridge); err != nil {
		return err
	}
	return n.ipCmd("link", "set", ifname, "up")
}

// HardwareAddr returns the MAC address of ifname in n.
func (n *NS) HardwareAddr(ifname string) (net.HardwareAddr, error) {
	var mac net.HardwareAddr
	err := n.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: hardware address of %s in %s: %w", ifname, n.Name, err)
	}
	return mac, nil
}

// Dial connects to addr on network from inside n; ctx bounds the dial.
func (n *NS) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Do runs fn on an OS thread that is inside n, and returns its error.
// Sockets fn creates stay in n afterwards and may be used anywhere.
//
// fn runs on a fresh goroutine locked to its thread, so only fn itself, not
// goroutines it starts, runs inside n; and fn must not call t.Fatal (Do then
// returns an error instead of the test stopping). A panic in fn is re-raised
// in the caller. Should the thread fail to switch back, it is left locked, so
// the runtime discards it rather than reuse it in the wrong namespace.
func (n *NS) Do(fn func() error) error { return n.do(fn) }

func (n *NS) String() string { return n.Name }

// Path is the file that names n, as a container runtime passes a
// namespace to CNI plugins.
func (n *NS) Path() string { return netnsDir + "/" + n.Name }

// ipCmd runs "ip -n <ns> args...".
func (n *NS) ipCmd(args ...string) error {
	_, err := runCmd(exec.Command(n.lab.ip, append([]string{"-n", n.Name}, args...)...))
	if err != nil {
		return fmt.Errorf("netlab: %w", err)
	}
	return nil
}

func runCmd(cmd *exec.Cmd) (string, error) {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %w: %s", strings.Join(cmd.Args[1:], " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// validName accepts names that are safe as file names under netnsDir and
// as single shell words in error messages.
func validName(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '-' || r == '_' || r == '.'
		if !ok {
			return false
		}
	}
	return true
}

// checkIfNames rejects names the kernel would refuse, with a clearer message:
// at most IFNAMSIZ-1 = 15 bytes, no '/', ':' or white space.
func checkIfNames(names ...string) error {
	for _, s := range names {
		if len(s) > 15 || !validName(s) {
			return fmt.Errorf("netlab: invalid interface name %q: use 1 to 15 letters, digits, '-', '_' or '.'", s)
		}
	}
	return nil
}
