package main

import (
	"bytes"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vxland/vxland/internal/netlab"
)

// kubeFlannelConflist is the CNI configuration kube-flannel installs on
// every node (cni-conf.json in its manifest), plus the flannel plugin's
// keys for where a node keeps its files: subnetFile (the subnet.env vxland
// writes), dataDir, and host-local's dataDir (passed on through "ipam"),
// so that the test writes nothing into the machine's /var/lib/cni but the
// cache of results that cnitool keeps there until "del".
const kubeFlannelConflist = `{
  "name": "cbr0",
  "cniVersion": "0.3.1",
  "plugins": [
    {
      "type": "flannel",
      "subnetFile": %q,
      "dataDir": %q,
      "ipam": {"dataDir": %q},
      "delegate": {
        "hairpinMode": true,
        "isDefaultGateway": true
      }
    },
    {
      "type": "portmap",
      "capabilities": {
        "portMappings": true
      }
    }
  ]
}`

// loopbackConflist is the network a container runtime adds to every pod
// before the pod network, on interface "lo" (containerd has it built in).
const loopbackConflist = `{"cniVersion": "0.3.1", "name": "cni-loopback", "plugins": [{"type": "loopback"}]}`

// cnitoolTimeout bounds one cnitool run, plugins included.
const cnitoolTimeout = time.Minute

// cniNode is a flannel node with its CNI configuration, as a kubelet's
// node has it.
type cniNode struct {
	*flannelNode
	bin     string // the plugins and cnitool (CNI_PATH)
	netDir  string // the conflists (NETCONFPATH)
	dataDir string // the flannel plugin's delegate configurations
	ipamDir string // host-local's store: <ipamDir>/cbr0/<ip> per address
}

// cniPod is a namespace whose network cnitool made.
type cniPod struct {
	ns       *netlab.NS
	id       string       // the container ID cnitool gives it
	addr     netip.Prefix // of its eth0
	hostVeth string       // its veth's end on the node
	capArgs  string       // CAP_ARGS, as the runtime passes them to add and del
	deleted  bool
}

func newCNINode(t *testing.T, n *flannelNode, bin string) *cniNode {
	t.Helper()
	dir := t.TempDir()
	c := &cniNode{flannelNode: n, bin: bin, netDir: filepath.Join(dir, "net.d"),
		dataDir: filepath.Join(dir, "flannel"), ipamDir: filepath.Join(dir, "networks")}
	if err := os.Mkdir(c.netDir, 0o755); err != nil {
		t.Fatal(err)
	}
	confs := map[string]string{
		"10-flannel.conflist":  fmt.Sprintf(kubeFlannelConflist, n.envFile, c.dataDir, c.ipamDir),
		"99-loopback.conflist": loopbackConflist,
	}
	for name, conf := range confs {
		if err := os.WriteFile(filepath.Join(c.netDir, name), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// cnitool runs "cnitool <op> <network> <pod's netns>" inside the node's
// namespace, as a kubelet on the node would call the plugins, and returns
// its standard output (the result of an add).
func (c *cniNode) cnitool(op, network string, p *cniPod, ifname string) ([]byte, error) {
	cmd := c.ns.Command(filepath.Join(c.bin, "cnitool"), op, network, p.ns.Path())
	cmd.Env = append(os.Environ(), "CNI_PATH="+c.bin, "NETCONFPATH="+c.netDir, "CNI_IFNAME="+ifname)
	if p.capArgs != "" {
		cmd.Env = append(cmd.Env, "CAP_ARGS="+p.capArgs)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	timer := time.AfterFunc(cnitoolTimeout, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	timer.Stop()
	if err != nil {
		return nil, fmt.Errorf("cnitool %s %s %s on %s: %w\n%s%s", op, network, p.ns, c.ns, err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// addPod creates a pod namespace and has cnitool add it to the loopback
// network and then to cbr0, with capArgs as CAP_ARGS. It checks what the
// plugins report and what the pod got: lo up, one address on eth0 from
// the node's subnet in subnet.env, the overlay's MTU.
func (c *cniNode) addPod(t *testing.T, lab *netlab.Lab, name, capArgs string) *cniPod {
	t.Helper()
	ns, err := lab.Namespace(name)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha512.Sum512([]byte(ns.Path()))
	p := &cniPod{ns: ns, id: fmt.Sprintf("cnitool-%x", sum[:10]), capArgs: capArgs}
	t.Cleanup(func() {
		if !p.deleted {
			c.delPod(t, p)
		}
		// A del that failed leaves cnitool's cache outside the lab.
		for _, f := range p.resultFiles() {
			os.Remove(f)
		}
	})
	// netlab brings lo up; the loopback plugin has to do it here.
	ns.MustRun(t, "ip", "link", "set", "lo", "down")
	if _, err := c.cnitool("add", "cni-loopback", p, "lo"); err != nil {
		t.Fatal(err)
	}
	if lo := ns.MustRun(t, "ip", "-o", "link", "show", "lo"); !strings.Contains(lo, ",UP") {
		t.Errorf("%s: the loopback plugin left lo down: %s", ns, lo)
	}

	out, err := c.cnitool("add", "cbr0", p, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Interfaces []struct{ Name, Sandbox string }
		IPs        []struct{ Address string }
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%s: cnitool add printed %q: %v", ns, out, err)
	}
	for _, ifc := range res.Interfaces {
		if ifc.Sandbox == "" && ifc.Name != "cni0" {
			p.hostVeth = ifc.Name
		}
	}
	subnet := c.subnet(t)
	if len(res.IPs) != 1 || p.hostVeth == "" {
		t.Fatalf("%s: cnitool add should report one address and a veth on the node: %s", ns, out)
	}
	if p.addr, err = netip.ParsePrefix(res.IPs[0].Address); err != nil || !subnet.Contains(p.addr.Addr()) || p.addr.Bits() != subnet.Bits() {
		t.Fatalf("%s: address %q (%v) is not in the node's subnet %s from %s", ns, res.IPs[0].Address, err, subnet, c.envFile)
	}
	eth0 := ns.MustRun(t, "ip", "-4", "addr", "show", "dev", "eth0")
	if !strings.Contains(eth0, "inet "+p.addr.String()+" ") || !strings.Contains(eth0, "mtu 1450 ") {
		t.Errorf("%s: eth0 should hold %s with the overlay's MTU 1450:\n%s", ns, p.addr, eth0)
	}
	t.Logf("%s on %s: %s, veth %s, id %s", ns, c.ns, p.addr, p.hostVeth, p.id)
	return p
}

// resultFiles are where cnitool caches p's results from add until del
// (libcni's cache, fixed to /var/lib/cni in cnitool).
func (p *cniPod) resultFiles() []string {
	return []string{
		filepath.Join("/var/lib/cni/results", "cbr0-"+p.id+"-eth0"),
		filepath.Join("/var/lib/cni/results", "cni-loopback-"+p.id+"-lo"),
	}
}

// delPod has cnitool delete the pod from both networks, as a kubelet
// does when the pod goes.
func (c *cniNode) delPod(t *testing.T, p *cniPod) {
	t.Helper()
	p.deleted = true
	if _, err := c.cnitool("del", "cbr0", p, "eth0"); err != nil {
		t.Error(err)
	}
	if _, err := c.cnitool("del", "cni-loopback", p, "lo"); err != nil {
		t.Error(err)
	}
}

// traces lists what the plugins keep of p outside its namespace: its
// iptables rules on the node (the bridge plugin's masquerade chain and
// portmap's DNAT chain, both commented with the container ID, and any rule
// naming its address), its address in host-local's store, the flannel
// plugin's delegate configuration and cnitool's cached result.
func (c *cniNode) traces(t *testing.T, p *cniPod) []string {
	t.Helper()
	var found []string
	ip := regexp.MustCompile(regexp.QuoteMeta(p.addr.Addr().String()) + `\b`)
	for line := range strings.Lines(c.ns.MustRun(t, "iptables-save")) {
		if strings.Contains(line, p.id) || ip.MatchString(line) {
			found = append(found, "iptables: "+strings.TrimSpace(line))
		}
	}
	for _, f := range append(p.resultFiles(), filepath.Join(c.ipamDir, "cbr0", p.addr.Addr().String()), filepath.Join(c.dataDir, p.id)) {
		if _, err := os.Stat(f); err == nil {
			found = append(found, "file: "+f)
		}
	}
	return found
}

// The CNI plugins a kubelet with kube-flannel calls, run by cnitool on two
// vxland --mode=flannel nodes: the flannel plugin reads vxland's
// subnet.env and delegates to bridge and host-local, so pods get addresses
// from their node's lease and reach each other across the overlay;
// portmap's hostPort answers at the node's address from a pod on another
// node; and "del" leaves nothing behind.
func TestFlannelCNIChain(t *testing.T) {
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skipf("skipping: the bridge plugin's ipMasq and portmap need iptables (.ci/run installs it): %v", err)
	}
	fl := newFlannelLab(t, true)
	bin := cniPlugins(t)
	n1, n2 := fl.addNode(), fl.addNode()
	for _, n := range fl.nodes {
		fl.start(n)
		fl.waitReady(n)
	}
	c1, c2 := newCNINode(t, n1, bin), newCNINode(t, n2, bin)
	t.Logf("iptables on the nodes: %s", strings.TrimSpace(n1.ns.MustRun(t, "iptables", "--version")))

	const hostPort, containerPort = 30080, 8080
	a1 := c1.addPod(t, fl.lab, "pa1", fmt.Sprintf(`{"portMappings":[{"hostPort":%d,"containerPort":%d,"protocol":"tcp"}]}`, hostPort, containerPort))
	a2 := c1.addPod(t, fl.lab, "pa2", "")
	b1 := c2.addPod(t, fl.lab, "pb1", "")
	if a1.addr == a2.addr {
		t.Fatalf("two pods on %s got the same address %s", n1.ns, a1.addr)
	}

	ctx := testCtx(t, 60*time.Second)
	addr := func(p *cniPod, port int) string { return net.JoinHostPort(p.addr.Addr().String(), fmt.Sprint(port)) }
	if err := netlab.TCPTransfer(ctx, a1.ns, b1.ns, addr(b1, 5001), 4<<20); err != nil {
		t.Fatal(err)
	}
	if err := netlab.TCPTransfer(ctx, b1.ns, a2.ns, addr(a2, 5002), 4<<20); err != nil {
		t.Fatal(err)
	}
	if err := netlab.Reach(ctx, a2.ns, a1.ns, a1.addr.Addr().String()); err != nil {
		t.Fatalf("pods on one node's bridge: %v", err)
	}
	// b1's connection to n1's address is masqueraded by n2 and mapped to
	// a1 by n1's portmap rules.
	if err := netlab.TCPTransferVia(ctx, b1.ns, a1.ns, addr(a1, containerPort), net.JoinHostPort(n1.ip, fmt.Sprint(hostPort)), 1<<20); err != nil {
		t.Fatalf("hostPort %d on %s: %v", hostPort, n1.ns, err)
	}

	// The plugins' rules are in the node's namespace, not the machine's.
	if out, err := exec.Command("iptables-save").CombinedOutput(); err != nil || strings.Contains(string(out), a1.id) {
		t.Errorf("iptables-save in the root namespace (%v) shows rules of %s:\n%s", err, a1.ns, out)
	}
	before := c1.traces(t, a1)
	for _, want := range []string{"MASQUERADE", "CNI-DN-", "file: " + c1.ipamDir, "file: " + c1.dataDir, "file: /var/lib/cni/results/cbr0-"} {
		if !strings.Contains(strings.Join(before, "\n"), want) {
			t.Errorf("%s: no %q among what the plugins keep of it:\n%s", a1.ns, want, strings.Join(before, "\n"))
		}
	}

	for _, del := range []struct {
		c *cniNode
		p *cniPod
	}{{c1, a1}, {c1, a2}, {c2, b1}} {
		del.c.delPod(t, del.p)
		if left := del.c.traces(t, del.p); len(left) > 0 {
			t.Errorf("%s: left behind after cnitool del:\n%s", del.p.ns, strings.Join(left, "\n"))
		}
		if links := del.p.ns.MustRun(t, "ip", "-o", "link"); strings.Contains(links, "eth0") {
			t.Errorf("%s: eth0 is still there after cnitool del:\n%s", del.p.ns, links)
		}
		if links := del.c.ns.MustRun(t, "ip", "-o", "link"); strings.Contains(links, del.p.hostVeth+"@") {
			t.Errorf("%s: veth %s of %s is still there after cnitool del:\n%s", del.c.ns, del.p.hostVeth, del.p.ns, links)
		}
	}
	for _, c := range []*cniNode{c1, c2} {
		if ports := c.ns.MustRun(t, "ip", "-o", "link", "show", "master", "cni0"); strings.TrimSpace(ports) != "" {
			t.Errorf("%s: cni0 still has ports after every pod was deleted:\n%s", c.ns, ports)
		}
		if rules := c.ns.MustRun(t, "iptables-save"); strings.Contains(rules, ":CNI-DN-") || regexp.MustCompile(`:CNI-[0-9a-f]{24} `).MatchString(rules) {
			t.Errorf("%s: a pod's chain is left after every pod was deleted:\n%s", c.ns, rules)
		}
		entries, err := os.ReadDir(filepath.Join(c.ipamDir, "cbr0"))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if _, err := netip.ParseAddr(e.Name()); err == nil {
				t.Errorf("%s: host-local still holds %s", c.ns, e.Name())
			}
		}
	}
}
