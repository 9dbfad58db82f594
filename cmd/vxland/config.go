package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/vxland/vxland/discovery"
	"github.com/vxland/vxland/encap"
	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/fdb"
	"github.com/vxland/vxland/overlay/poller"
	"github.com/vxland/vxland/overlay/ratelimit"
)

// usageError is a bad flag or configuration value: vxland says which and
// exits with status 2.
type usageError struct {
	msg string
	// flag is the flag the message is about, if one, and detail the
	// message without it: a value from the configuration file is named
	// by its key and place instead (configFile.blame).
	flag, detail string
	// cause is the error a %w of usagef wrapped, for errors.Is.
	cause error
}

func (e *usageError) Error() string { return e.msg }
func (e *usageError) Unwrap() error { return e.cause }

func usagef(format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &usageError{msg: err.Error(), cause: errors.Unwrap(err)}
}

// flagErrorf is a usage error about one flag's value: "--flag detail".
func flagErrorf(flag, format string, args ...any) error {
	detail := fmt.Sprintf(format, args...)
	return &usageError{msg: "--" + flag + " " + detail, flag: flag, detail: detail}
}

// maxQueues bounds --queues: the kernel's limit is 256 queues per TAP
// (MAX_TAP_QUEUES), more than any host here has cores for.
const maxQueues = 64

// maxTAPMTU bounds --tap-mtu: a frame of that MTU with an 802.1Q tag
// still fits the data plane's buffers (the kernel allows 65521 on a TAP).
const maxTAPMTU = overlay.MaxFrameSize - encap.EthernetHeaderLen - 4

// maxVNIs bounds how many VNIs --vni serves in one daemon.
const maxVNIs = overlay.MaxMuxVNIs

// maxIfNameLen is IFNAMSIZ less the terminating NUL.
const maxIfNameLen = 15

// config is vxland's configuration after parsing and validation.
type config struct {
	// VNI is the first VNI of --vni; VNIs is every VNI served, with its
	// bridge, TAP and control socket (with one VNI: --bridge, --tap and
	// --control-socket).
	VNI     uint32
	VNIs    []vniPlane
	Port    uint16
	LocalIP netip.Addr // invalid: find it from --iface or the default route
	Iface   string
	Bridge  string
	TAP     string
	MTU     int // 0: underlay MTU less the VXLAN overhead
	// ForceMTU accepts an MTU larger than the underlay carries whole.
	ForceMTU bool
	// TAPMTU is the TAP's link MTU, at least the overlay MTU; 0: the
	// overlay MTU.
	TAPMTU        int
	Peers         []netip.Addr
	LogLevel      slog.Level
	LogFormat     string // logText or logJSON
	FDBAgeing     time.Duration
	ControlSocket string
	MetricsListen string // "": no metrics listener
	Offload       offloads
	Queues        int // queues of the TAP and sockets on the port, ≥ 1
	// BatchWhenIdle: --idle-sched=batch (overlay.Config.BatchWhenIdle).
	BatchWhenIdle bool
	// Poll: --poll, how long a forwarding thread polls before it sleeps
	// (overlay.Config.Poll); poller.PollAlways for always.
	Poll time.Duration
	// Persist: the TAP outlives the daemon (tap.Options.Persist).
	Persist bool
	Limits  limits
	// Outer is the settings of the outer headers (--ttl, --tos, --df,
	// --udp-csum).
	Outer outerHeader
	// Learning: the source MACs of received frames are learned
	// (--learning).
	Learning bool
	// StateDir keeps what the daemon must find again after a restart:
	// the static FDB entries of `vxland fdb add` (--state-dir).
	StateDir string

	EtcdEndpoints []string
	EtcdPrefix    string
	EtcdCAFile    string
	EtcdCertFile  string
	EtcdKeyFile   string
	EtcdUsername  string
	// EtcdPassword is read from --etcd-password-file or
	// VXLAND_ETCD_PASSWORD, never from a flag's value: it is in no
	// process listing, Values or Settings.
	EtcdPassword       string
	LeaseTTL           time.Duration
	EmbeddedEtcd       string // data directory; "" runs no embedded etcd
	EmbeddedEtcdListen string
	// The embedded etcd's TLS: its certificate and key, and the CA its
	// clients' certificates must be signed by ("": no TLS, or TLS
	// without client certificates).
	EmbeddedEtcdCertFile, EmbeddedEtcdKeyFile, EmbeddedEtcdClientCAFile string
	// Underlay holds the prefixes every VTEP address must be in
	// (--underlay-cidr); empty: any.
	Underlay discovery.Underlay

	// Mode is modeL2 or modeFlannel; the rest of this block is for the
	// flannel mode (flannel.go).
	Mode          string
	PublicIP      netip.Addr // invalid: the VTEP address
	SubnetFile    string
	HealthzListen string // "": no TCP health endpoint

	// Values is every flag's value after all sources, by name: what a
	// reload compares to tell what changed.
	Values map[string]string
	// Settings is every flag's effective value and where it came from,
	// for the control socket (`vxland show config`).
	Settings []setting
}

// setting is one flag of the effective configuration.
type setting struct {
	Flag  string `json:"flag"`
	Value string `json:"value"`
	// From says where the value came from: "default", "command line",
	// the VXLAND_* variable, or the configuration file.
	From string `json:"from"`
}

// The formats of --log-format.
const (
	logText = "text"
	logJSON = "json"
)

// The modes of --mode.
const (
	modeL2      = "l2"
	modeFlannel = "flannel"
)

// UseEtcd reports whether the control plane runs.
func (c *config) UseEtcd() bool { return len(c.EtcdEndpoints) > 0 || c.EmbeddedEtcd != "" }

const envPrefix = "VXLAND_"

// etcdPasswordEnv holds the password of --etcd-username, as an
// alternative to --etcd-password-file. It sets no flag: a password is
// never a flag's value, which any user could read in the process list.
const etcdPasswordEnv = envPrefix + "ETCD_PASSWORD"

// envName is the environment variable that sets a flag: --local-ip is
// VXLAND_LOCAL_IP.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func newFlagSet(out io.Writer) (*pflag.FlagSet, *rawFlags) {
	fs := pflag.NewFlagSet("vxland", pflag.ContinueOnError)
	fs.SetOutput(out)
	fs.SortFlags = false
	r := &rawFlags{}
	fs.StringVar(&r.configFile, "config", "", "YAML file of settings, keyed by the long flag names (e.g. vni: 42, peer: [10.0.0.2]); flags and VXLAND_* win over it; SIGHUP reads it again")
	r.vni = vniList{vnis: []uint64{1}}
	fs.Var(&r.vni, "vni", "VXLAN Network Identifier, 0 to 16777215; repeat it (or separate with commas) to serve several VNIs on one port, each on its own bridge vxbr<VNI> with the TAP vxtap<VNI>")
	fs.IntVar(&r.port, "port", encap.DefaultPort, "UDP port of the VXLAN tunnel, on this host and on every peer (8472 is the Linux and flannel default)")
	fs.StringVar(&r.localIP, "local-ip", "", "underlay address of this VTEP (default: the address of --iface, else of the default route's interface)")
	fs.StringVar(&r.iface, "iface", "", "underlay interface (default: the interface of --local-ip, else of the default route)")
	fs.StringVar(&r.bridge, "bridge", "", "bridge to attach the TAP to, created if missing (default \"vxbr<VNI>\")")
	fs.StringVar(&r.tap, "tap", "", "name of the TAP device (default \"vxtap<VNI>\")")
	fs.IntVar(&r.mtu, "mtu", 0, "overlay MTU: the largest IP packet carried, and the TAP's MTU unless --tap-mtu (default: underlay MTU - 50 on IPv4, - 70 on IPv6)")
	fs.BoolVar(&r.forceMTU, "force-mtu", false, "accept an --mtu larger than the underlay MTU less the VXLAN overhead; frames that do not fit the underlay are then refused by it (counted as send_msgsize)")
	fs.IntVar(&r.tapMTU, "tap-mtu", 0, "link MTU of the TAP, at least --mtu (default 0: --mtu); set it to the containers' MTU (e.g. 1500) so that the bridge hands their larger packets to vxland, which drops them and answers with ICMP \"fragmentation needed\" / \"packet too big\" carrying --mtu, for path MTU discovery (the kernel's vxlan with df set and a larger MTU does the same); L2 mode only")
	fs.StringVar(&r.group, "group", "", "multicast group (e.g. 239.1.1.1, ff05::42) that broadcast, multicast and unknown unicast frames go to, one datagram each, as ip link's vxlan group: joined on --iface, which it needs; peers of --peer or etcd then get no copy of their own. It needs --underlay-cidr too: the group's members are not known in advance, so a sender in that prefix is accepted and learned from. With several VNIs, set each VNI's group in the --config file's section vnis")
	fs.StringSliceVar(&r.peers, "peer", nil, "underlay address of a peer VTEP; repeat or separate with commas (static peers, no etcd)")
	fs.StringVar(&r.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&r.logFormat, "log-format", logText, "log format: text (key=value) or json (one object a line)")
	fs.DurationVar(&r.fdbAgeing, "fdb-ageing", 300*time.Second, "how long a learned MAC stays in the FDB without traffic (0 disables ageing)")
	fs.IntVar(&r.limits.FDBMax, "fdb-max", 16384, "most learned MACs per VNI (as the kernel's vxlan maxaddress); a new MAC beyond it is not learned, its frame is still delivered, and it counts as drop reason fdb_full; static, etcd and flannel entries are not capped (0: no cap)")
	fs.IntVar(&r.limits.LocalMACMax, "local-mac-max", 4096, "most MACs of this host's containers published to etcd; more count as local_mac_full (0: no cap)")
	fs.IntVar(&r.limits.LocalMACRate, "local-mac-rate", 100, "new local MACs taken per second for etcd, with bursts of --local-mac-burst; more count as local_mac_rate (0: no limit)")
	fs.IntVar(&r.limits.LocalMACBurst, "local-mac-burst", 1000, "new local MACs taken at once before --local-mac-rate applies")
	fs.IntVar(&r.limits.FloodRate, "flood-rate", 200, "frames per second that one source MAC may flood (broadcast, multicast, unknown unicast; each is copied to every peer, or sent once to --group), with bursts of --flood-burst; more are dropped as flood_rate_source (0: no limit)")
	fs.IntVar(&r.limits.FloodBurst, "flood-burst", 500, "frames one source MAC may flood at once before --flood-rate applies")
	fs.IntVar(&r.limits.FloodRateTotal, "flood-rate-total", 5000, "frames per second that all sources together may flood, with bursts of as many; more are dropped as flood_rate_total (0: no limit)")
	fs.StringSliceVar(&r.offload, "offload", []string{"all"}, "fast-path mechanisms to use, comma-separated: tso (TAP segmentation offload and coalesced TAP writes), gso (UDP_SEGMENT), gro (UDP_GRO), batch (recvmmsg/sendmmsg); all or none")
	fs.StringVar(&r.idleSched, "idle-sched", "batch", "scheduling policy of a forwarding thread whose traffic is sparse (waits of 5 ms or more): batch (SCHED_BATCH, so that a lone packet does not preempt its sender and the round trip stays on one CPU; SCHED_OTHER again once traffic is steady) or normal (always SCHED_OTHER)")
	fs.StringVar(&r.poll, "poll", "0", "how long a forwarding thread keeps polling its TAP queue and socket after its last packet before it sleeps, yielding its CPU between rounds (e.g. 50us, 1ms), or always (it never sleeps); saves a thread wake-up at every hop of a round trip, for hosts that give vxland a core of its own (taskset, systemd CPUAffinity=): the threads keep that core busy while they poll (default 0: sleep at once)")
	fs.StringVar(&r.ttl, "ttl", "64", "TTL (IPv6: hop limit) of the outer IP header, 1 to 255, or inherit: the inner IPv4 TTL or IPv6 hop limit (64 for other frames), as ip link's vxlan ttl")
	fs.StringVar(&r.tos, "tos", "0", "TOS byte (IPv6: traffic class) of the outer IP header, 0 to 255 (or 0x00 to 0xff), or inherit: the inner IP header's DSCP and ECN, Congestion Experienced sent as ECT(0) (0 for other frames), as ip link's vxlan tos")
	fs.StringVar(&r.df, "df", "set", "DF of the outer IPv4 header: set (a datagram too large for the path is refused, never fragmented), unset (no DF; the kernel fragments what is too large) or inherit (DF as the inner IPv4 header's, set for inner IPv6, clear for other frames, as the kernel's vxlan does); on IPv6 unset lets the kernel fragment, inherit as for IPv4")
	fs.BoolVar(&r.udpCsum, "udp-csum", true, "compute the outer UDP checksum; --udp-csum=false sends IPv4 datagrams with checksum 0 (RFC 7348 §5) and without UDP segmentation offload, which the kernel refuses for them; IPv6 always has one (exit 2)")
	fs.BoolVar(&r.learning, "learning", true, "learn the source MACs of received frames behind the VTEP that sent them; --learning=false forwards only by the static, etcd and flannel entries (unknown destinations are flooded), as ip link's vxlan nolearning")
	fs.StringVar(&r.stateDir, "state-dir", "/var/lib/vxland", "directory (made 0700 when first needed) that keeps the FDB entries of vxland fdb add across restarts, one file per VNI")
	fs.IntVar(&r.queues, "queues", 0, "queues of the TAP (IFF_MULTI_QUEUE) and sockets on --port (SO_REUSEPORT), one forwarding thread each (default 0: one per CPU)")
	fs.BoolVar(&r.persist, "persist", true, "keep the TAP (its MAC, MTU and bridge port; in flannel mode its address, neighbours and routes) when vxland exits and adopt it on start, so that a restart leaves the link as it was; --persist=false removes it on exit (else: ip link del <tap>)")
	fs.StringVar(&r.controlSocket, "control-socket", "", "Unix socket serving stats and the FDB (default \"/run/vxland/<tap>.sock\")")
	fs.StringVar(&r.metricsListen, "metrics-listen", "", "TCP host:port serving Prometheus metrics on /metrics, and /healthz and /readyz (default off; e.g. 127.0.0.1:"+defaultMetricsPort+")")
	fs.StringSliceVar(&r.etcdEndpoints, "etcd-endpoints", nil, "etcd endpoints, comma-separated (e.g. https://10.0.0.1:2379); enables discovery through etcd")
	fs.StringVar(&r.etcdPrefix, "etcd-prefix", discovery.DefaultPrefix, "etcd key prefix (see docs/etcd-schema.md; default /coreos.com/network with --mode=flannel)")
	fs.StringVar(&r.etcdCAFile, "etcd-cafile", "", "CA certificate that verifies the etcd servers (TLS)")
	fs.StringVar(&r.etcdCertFile, "etcd-certfile", "", "client certificate for etcd (TLS)")
	fs.StringVar(&r.etcdKeyFile, "etcd-keyfile", "", "client key for etcd (TLS)")
	fs.StringVar(&r.etcdUsername, "etcd-username", "", "etcd user to log in as, when etcd has authentication enabled; the password comes from --etcd-password-file or "+etcdPasswordEnv)
	fs.StringVar(&r.etcdPasswordFile, "etcd-password-file", "", "file holding the password of --etcd-username (one line; keep it mode 0600)")
	fs.DurationVar(&r.leaseTTL, "lease-ttl", 20*time.Second, "TTL of this host's etcd lease: a dead host disappears from the others after it")
	fs.StringVar(&r.embeddedEtcd, "embedded-etcd", "", "run an etcd server inside vxland, storing in this directory")
	fs.StringVar(&r.embeddedEtcdListen, "embedded-etcd-listen", "127.0.0.1:2379", "client address of the embedded etcd (its peer port is this port + 1)")
	fs.StringVar(&r.embeddedEtcdCertFile, "embedded-etcd-certfile", "", "server certificate of the embedded etcd: it serves TLS (https) to its clients")
	fs.StringVar(&r.embeddedEtcdKeyFile, "embedded-etcd-keyfile", "", "key of --embedded-etcd-certfile")
	fs.StringVar(&r.embeddedEtcdClientCAFile, "embedded-etcd-client-cafile", "", "CA that must sign the embedded etcd's clients' certificates: a client without one is refused (this daemon's own client uses --etcd-certfile and --etcd-keyfile)")
	fs.StringSliceVar(&r.underlayCIDR, "underlay-cidr", nil, "prefix that every VTEP address must be in, repeat or separate with commas (e.g. 10.0.0.0/24): an etcd record or flannel lease naming a VTEP outside is ignored, so its packets are dropped (default: any address)")
	fs.StringVar(&r.mode, "mode", modeL2, "l2: containers on a bridge, peers from --peer or etcd; flannel: a node of a flannel network in etcd (docs/flannel.md)")
	fs.StringVar(&r.publicIP, "public-ip", "", "flannel mode: IPv4 address the other nodes reach this one at (default: the VTEP address)")
	fs.StringVar(&r.subnetFile, "subnet-file", defaultSubnetFile, "flannel mode: where subnet.env is written for the flannel CNI plugin")
	fs.StringVar(&r.healthzListen, "healthz-listen", "", "flannel mode: TCP host:port serving /healthz and /readyz (default off; the control socket always serves them)")
	fs.BoolVar(&r.version, "version", false, "print the version and exit")
	return fs, r
}

type rawFlags struct {
	configFile string
	vni        vniList
	// vniSections is the --config file's section vnis.
	vniSections   []vniSection
	port          int
	localIP       string
	iface         string
	bridge        string
	tap           string
	mtu           int
	forceMTU      bool
	tapMTU        int
	peers         []string
	group         string
	logLevel      string
	logFormat     string
	fdbAgeing     time.Duration
	controlSocket string
	metricsListen string
	offload       []string
	queues        int
	idleSched     string
	poll          string
	persist       bool
	limits        limits
	ttl, tos, df  string
	udpCsum       bool
	learning      bool
	stateDir      string

	etcdEndpoints    []string
	etcdPrefix       string
	etcdCAFile       string
	etcdCertFile     string
	etcdKeyFile      string
	etcdUsername     string
	etcdPasswordFile string
	// etcdPassword is VXLAND_ETCD_PASSWORD.
	etcdPassword       string
	leaseTTL           time.Duration
	embeddedEtcd       string
	embeddedEtcdListen string

	embeddedEtcdCertFile     string
	embeddedEtcdKeyFile      string
	embeddedEtcdClientCAFile string
	underlayCIDR             []string

	mode          string
	publicIP      string
	subnetFile    string
	healthzListen string
	version       bool
	// changed reports whether a flag was set on the command line or in
	// the environment.
	changed func(flag string) bool
}

// errVersion is what parseConfig returns for --version.
var errVersion = errors.New("version requested")

// defaultMetricsPort is the port the documentation suggests for
// --metrics-listen: next to 8471 (the health port of flannel's examples)
// and 8472 (the VXLAN port of Linux and flannel), and used by nothing
// common.
const defaultMetricsPort = "8473"

// parseConfig parses the command line, the VXLAND_* environment (read
// through getenv) and the --config file, in that order of precedence over
// the defaults, and validates what can be validated without touching the
// system. It returns pflag.ErrHelp for --help, errVersion for --version,
// and a *usageError for anything bad.
func parseConfig(args []string, getenv func(string) string, out io.Writer) (*config, error) {
	fs, r := newFlagSet(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: vxland [flags]\n       vxland show stats|fdb|peers|config [flags]\n       vxland trace MAC|IPv4 [flags]\n       vxland capture [flags]\n       vxland fdb add MAC dst IP | del MAC [dst IP] [flags]\n\n")
		fmt.Fprintf(out, "vxland carries Ethernet frames between hosts over VXLAN (RFC 7348).\n")
		fmt.Fprintf(out, "Every flag can also be set in the environment: --local-ip as VXLAND_LOCAL_IP,\n")
		fmt.Fprintf(out, "or in the --config file: local-ip: 10.0.0.1.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, err
		}
		return nil, usagef("%v", err)
	}
	if r.version {
		return nil, errVersion
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q", fs.Arg(0))
	}
	cmdline := map[string]bool{}
	fs.Visit(func(f *pflag.Flag) { cmdline[f.Name] = true })
	fromEnv, err := applyEnv(fs, getenv)
	if err != nil {
		return nil, err
	}
	var file *configFile
	if r.configFile != "" {
		if file, err = readConfigFile(r.configFile); err != nil {
			return nil, err
		}
		if err := file.apply(fs); err != nil {
			return nil, err
		}
	}
	r.changed = fs.Changed
	if file != nil {
		r.vniSections = file.vnis
	}
	r.etcdPassword = getenv(etcdPasswordEnv)
	c, err := r.validate()
	if err != nil {
		return nil, file.blame(err)
	}
	c.Values = map[string]string{}
	// The values derived in validation, not the flags' empty defaults.
	derived := map[string]string{"bridge": c.Bridge, "tap": c.TAP, "control-socket": c.ControlSocket,
		"queues": strconv.Itoa(c.Queues), "etcd-prefix": c.EtcdPrefix}
	fs.VisitAll(func(f *pflag.Flag) {
		c.Values[f.Name] = f.Value.String()
		st := setting{Flag: f.Name, Value: f.Value.String(), From: "default"}
		if v, ok := derived[f.Name]; ok {
			st.Value = v
		}
		switch {
		case cmdline[f.Name]:
			st.From = "command line"
		case fromEnv[f.Name]:
			st.From = envName(f.Name)
		case f.Changed:
			st.From = "config file " + r.configFile
		}
		c.Settings = append(c.Settings, st)
	})
	return c, nil
}

// applyEnv sets every flag of fs not given on the command line from its
// VXLAND_* variable, read through getenv, and returns those it set.
func applyEnv(fs *pflag.FlagSet, getenv func(string) string) (map[string]bool, error) {
	set := make(map[string]bool)
	var envErr error
	fs.VisitAll(func(f *pflag.Flag) {
		name := envName(f.Name)
		v := getenv(name)
		// --version is an action, not a setting: VXLAND_VERSION in a
		// service's environment must not turn the daemon into a printer.
		if envErr != nil || f.Changed || v == "" || f.Name == "version" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			envErr = usagef("invalid value %q for %s (--%s): %v", v, name, f.Name, err)
		}
		set[f.Name] = true
	})
	return set, envErr
}

// controlSocketPath is where the daemon that these flags configure serves
// its control socket: --control-socket, else one named for the TAP, or in
// flannel mode (whose TAP is named only once the network config is read)
// flannel.sock. `vxland show` finds the daemon with it.
func (r *rawFlags) controlSocketPath() string {
	switch {
	case r.controlSocket != "":
		return r.controlSocket
	case r.mode == modeFlannel:
		return "/run/vxland/flannel.sock"
	}
	return "/run/vxland/" + r.tapName() + ".sock"
}

// tapName is --tap, by default vxtap<VNI>.
func (r *rawFlags) tapName() string {
	if r.tap != "" {
		return r.tap
	}
	return fmt.Sprintf("vxtap%d", r.vni.vnis[0])
}

// checkIfName checks name, an interface name that flag gives.
func checkIfName(flag, name string) error {
	if len(name) > maxIfNameLen || strings.ContainsAny(name, "/ \t\n:") {
		return flagErrorf(flag, "%q: an interface name has at most %d characters and no '/', ':' or spaces", name, maxIfNameLen)
	}
	return nil
}

// checkVNI checks --vni.
func (r *rawFlags) checkVNI() error {
	if len(r.vni.vnis) == 0 {
		return flagErrorf("vni", "no VNI given")
	}
	for _, v := range r.vni.vnis {
		if v > encap.MaxVNI {
			return flagErrorf("vni", "%d: a VNI is 24 bits, 0 to %d", v, encap.MaxVNI)
		}
	}
	return nil
}

func (r *rawFlags) validate() (*config, error) {
	c := &config{Iface: r.iface, FDBAgeing: r.fdbAgeing}
	planes, err := r.checkVNIs()
	if err != nil {
		return nil, err
	}
	c.VNI = uint32(r.vni.vnis[0])
	if r.port < 1 || r.port > 65535 {
		return nil, flagErrorf("port", "%d: must be 1 to 65535", r.port)
	}
	c.Port = uint16(r.port)
	if r.localIP != "" {
		ip, err := netip.ParseAddr(r.localIP)
		if err != nil || ip.Zone() != "" {
			return nil, flagErrorf("local-ip", "%q is not an IP address", r.localIP)
		}
		if !ip.Unmap().IsGlobalUnicast() {
			return nil, flagErrorf("local-ip", "%s: must be a unicast address", ip)
		}
		c.LocalIP = ip.Unmap()
	}
	for _, p := range r.peers {
		ip, err := netip.ParseAddr(strings.TrimSpace(p))
		if err != nil || ip.Zone() != "" {
			return nil, flagErrorf("peer", "%q is not an IP address", p)
		}
		ip = ip.Unmap()
		if !ip.IsGlobalUnicast() {
			return nil, flagErrorf("peer", "%s: must be a unicast address", ip)
		}
		if c.LocalIP.IsValid() && ip.Is4() != c.LocalIP.Is4() {
			return nil, flagErrorf("peer", "%s: not the same address family as --local-ip %s", ip, c.LocalIP)
		}
		c.Peers = append(c.Peers, ip)
	}
	c.Bridge = r.bridge
	if c.Bridge == "" {
		c.Bridge = fmt.Sprintf("vxbr%d", c.VNI)
	}
	c.TAP = r.tapName()
	for _, n := range []struct{ flag, name string }{{"bridge", c.Bridge}, {"tap", c.TAP}, {"iface", c.Iface}} {
		if err := checkIfName(n.flag, n.name); err != nil {
			return nil, err
		}
	}
	if c.Bridge == c.TAP {
		return nil, flagErrorf("bridge", "and --tap are both %q", c.TAP)
	}
	if r.mtu != 0 && (r.mtu < 68 || r.mtu > 65535-encap.OverheadIPv6) {
		return nil, flagErrorf("mtu", "%d: must be 68 to %d (0 picks the underlay MTU less the VXLAN overhead)", r.mtu, 65535-encap.OverheadIPv6)
	}
	c.MTU = r.mtu
	c.ForceMTU = r.forceMTU
	if r.tapMTU != 0 && (r.tapMTU < 68 || r.tapMTU > maxTAPMTU) {
		return nil, flagErrorf("tap-mtu", "%d: must be 68 to %d (0 takes --mtu)", r.tapMTU, maxTAPMTU)
	}
	c.TAPMTU = r.tapMTU
	if err := c.LogLevel.UnmarshalText([]byte(r.logLevel)); err != nil {
		return nil, flagErrorf("log-level", "%q: must be debug, info, warn or error", r.logLevel)
	}
	switch r.logFormat {
	case logText, logJSON:
		c.LogFormat = r.logFormat
	default:
		return nil, flagErrorf("log-format", "%q: must be %s or %s", r.logFormat, logText, logJSON)
	}
	if r.fdbAgeing < 0 {
		return nil, flagErrorf("fdb-ageing", "%s: must not be negative", r.fdbAgeing)
	}
	c.ControlSocket = r.controlSocketPath()
	c.VNIs = planes
	if planes == nil {
		c.VNIs = []vniPlane{{VNI: c.VNI, Bridge: c.Bridge, TAP: c.TAP, MTU: r.mtu, ControlSocket: c.ControlSocket}}
	}
	if r.metricsListen != "" {
		if err := checkListen("metrics-listen", r.metricsListen, "127.0.0.1:"+defaultMetricsPort); err != nil {
			return nil, err
		}
		c.MetricsListen = r.metricsListen
	}
	off, err := parseOffloads(r.offload)
	if err != nil {
		return nil, err
	}
	c.Offload = off
	switch {
	case r.queues < 0 || r.queues > maxQueues:
		return nil, flagErrorf("queues", "%d: must be 1 to %d, or 0 for one per CPU", r.queues, maxQueues)
	case r.queues == 0:
		c.Queues = min(runtime.NumCPU(), maxQueues)
	default:
		c.Queues = r.queues
	}
	switch r.idleSched {
	case "batch":
		c.BatchWhenIdle = true
	case "normal":
	default:
		return nil, flagErrorf("idle-sched", "%q: want batch or normal", r.idleSched)
	}
	if c.Poll, err = parsePoll(r.poll); err != nil {
		return nil, err
	}
	c.Persist = r.persist
	if c.Outer, err = r.outerHeader(); err != nil {
		return nil, err
	}
	c.Learning = r.learning
	if r.stateDir == "" || !filepath.IsAbs(r.stateDir) {
		return nil, flagErrorf("state-dir", "%q: want an absolute directory path", r.stateDir)
	}
	c.StateDir = r.stateDir
	if err := r.limits.validate(); err != nil {
		return nil, err
	}
	c.Limits = r.limits
	if err := r.validateEtcd(c); err != nil {
		return nil, err
	}
	if err := r.validateGroups(c); err != nil {
		return nil, err
	}
	if err := r.validateMode(c); err != nil {
		return nil, err
	}
	return c, nil
}

func (r *rawFlags) validateEtcd(c *config) error {
	for _, e := range r.etcdEndpoints {
		e = strings.TrimSpace(e)
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return flagErrorf("etcd-endpoints", "%q: want a URL such as http://127.0.0.1:2379", e)
		}
		c.EtcdEndpoints = append(c.EtcdEndpoints, e)
	}
	if !strings.HasPrefix(r.etcdPrefix, "/") || strings.HasSuffix(r.etcdPrefix, "/") && r.etcdPrefix != "/" {
		return flagErrorf("etcd-prefix", "%q: must start with '/' and not end with one", r.etcdPrefix)
	}
	c.EtcdPrefix = r.etcdPrefix
	for _, f := range []struct{ flag, path string }{{"etcd-cafile", r.etcdCAFile}, {"etcd-certfile", r.etcdCertFile}, {"etcd-keyfile", r.etcdKeyFile},
		{"etcd-password-file", r.etcdPasswordFile}, {"embedded-etcd-certfile", r.embeddedEtcdCertFile},
		{"embedded-etcd-keyfile", r.embeddedEtcdKeyFile}, {"embedded-etcd-client-cafile", r.embeddedEtcdClientCAFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return flagErrorf(f.flag, "%s: %v", f.path, errors.Unwrap(err))
		}
	}
	if (r.etcdCertFile == "") != (r.etcdKeyFile == "") {
		return flagErrorf("etcd-certfile", "and --etcd-keyfile go together")
	}
	c.EtcdCAFile, c.EtcdCertFile, c.EtcdKeyFile = r.etcdCAFile, r.etcdCertFile, r.etcdKeyFile
	if r.leaseTTL < 2*time.Second || r.leaseTTL%time.Second != 0 {
		return flagErrorf("lease-ttl", "%s: must be whole seconds, at least 2s", r.leaseTTL)
	}
	c.LeaseTTL = r.leaseTTL
	c.EmbeddedEtcd = r.embeddedEtcd
	if _, port, err := net.SplitHostPort(r.embeddedEtcdListen); err != nil || port == "0" {
		return flagErrorf("embedded-etcd-listen", "%q: want host:port", r.embeddedEtcdListen)
	}
	c.EmbeddedEtcdListen = r.embeddedEtcdListen
	if err := r.validateEtcdPassword(c); err != nil {
		return err
	}
	if err := r.validateEmbeddedTLS(c); err != nil {
		return err
	}
	return r.validateUnderlay(c)
}

// validateEtcdPassword checks --etcd-username and reads its password.
func (r *rawFlags) validateEtcdPassword(c *config) error {
	switch {
	case r.etcdPasswordFile != "" && r.etcdPassword != "":
		return flagErrorf("etcd-password-file", "and %s are both set: give the password once", etcdPasswordEnv)
	case r.etcdUsername == "" && r.etcdPasswordFile != "":
		return flagErrorf("etcd-password-file", "needs --etcd-username")
	case r.etcdUsername == "" && r.etcdPassword != "":
		return usagef("%s needs --etcd-username", etcdPasswordEnv)
	case r.etcdUsername == "":
		return nil
	case r.etcdPasswordFile == "" && r.etcdPassword == "":
		return flagErrorf("etcd-username", "needs a password: --etcd-password-file or %s", etcdPasswordEnv)
	}
	c.EtcdUsername, c.EtcdPassword = r.etcdUsername, r.etcdPassword
	if r.etcdPasswordFile != "" {
		b, err := os.ReadFile(r.etcdPasswordFile)
		if err != nil {
			return flagErrorf("etcd-password-file", "%s: %v", r.etcdPasswordFile, err)
		}
		// One line, as echo or an editor writes it.
		c.EtcdPassword = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if c.EtcdPassword == "" {
			return flagErrorf("etcd-password-file", "%s is empty", r.etcdPasswordFile)
		}
	}
	return nil
}

// validateEmbeddedTLS checks the embedded etcd's TLS flags, and that this
// daemon's own client can talk to the server they make.
func (r *rawFlags) validateEmbeddedTLS(c *config) error {
	for _, f := range []struct{ flag, path string }{{"embedded-etcd-certfile", r.embeddedEtcdCertFile},
		{"embedded-etcd-keyfile", r.embeddedEtcdKeyFile}, {"embedded-etcd-client-cafile", r.embeddedEtcdClientCAFile}} {
		if f.path != "" && r.embeddedEtcd == "" {
			return flagErrorf(f.flag, "needs --embedded-etcd")
		}
	}
	switch {
	case (r.embeddedEtcdCertFile == "") != (r.embeddedEtcdKeyFile == ""):
		return flagErrorf("embedded-etcd-certfile", "and --embedded-etcd-keyfile go together")
	case r.embeddedEtcdClientCAFile != "" && r.embeddedEtcdCertFile == "":
		return flagErrorf("embedded-etcd-client-cafile", "needs --embedded-etcd-certfile: client certificates are checked over TLS only")
	}
	// With --etcd-endpoints the daemon talks to another etcd, and these
	// checks are that one's business.
	if len(c.EtcdEndpoints) == 0 && r.embeddedEtcd != "" {
		switch {
		case r.embeddedEtcdCertFile != "" && r.etcdCAFile == "":
			return flagErrorf("embedded-etcd-certfile", "needs --etcd-cafile: the daemon's own client verifies the server with it")
		case r.embeddedEtcdClientCAFile != "" && r.etcdCertFile == "":
			return flagErrorf("embedded-etcd-client-cafile", "needs --etcd-certfile and --etcd-keyfile: the daemon's own client must show a certificate too")
		case r.embeddedEtcdCertFile == "" && r.etcdCAFile != "":
			return flagErrorf("etcd-cafile", "is for TLS, but the embedded etcd serves plain http without --embedded-etcd-certfile")
		}
	}
	c.EmbeddedEtcdCertFile, c.EmbeddedEtcdKeyFile, c.EmbeddedEtcdClientCAFile = r.embeddedEtcdCertFile, r.embeddedEtcdKeyFile, r.embeddedEtcdClientCAFile
	return nil
}

// validateUnderlay parses --underlay-cidr and checks that the addresses
// given on the command line lie in it.
func (r *rawFlags) validateUnderlay(c *config) error {
	for _, s := range r.underlayCIDR {
		s = strings.TrimSpace(s)
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Addr().Zone() != "" || p.Addr().Is4In6() {
			return flagErrorf("underlay-cidr", "%q: want a prefix such as 10.0.0.0/24", s)
		}
		c.Underlay = append(c.Underlay, p.Masked())
	}
	if c.LocalIP.IsValid() {
		if err := c.Underlay.Check(c.LocalIP); err != nil {
			return flagErrorf("local-ip", "%s is outside --underlay-cidr %s", c.LocalIP, c.Underlay)
		}
	}
	for _, p := range c.Peers {
		if err := c.Underlay.Check(p); err != nil {
			return flagErrorf("peer", "%s is outside --underlay-cidr %s", p, c.Underlay)
		}
	}
	return nil
}

// outerHeader is the settings of the outer IP and UDP headers.
type outerHeader struct {
	TTL        int // 1 to 255, used also for non-IP frames when InheritTTL
	InheritTTL bool
	TOS        uint8 // used also for non-IP frames when InheritTOS
	InheritTOS bool
	NoDF       bool // --df unset
	InheritDF  bool // --df inherit
	NoChecksum bool // --udp-csum=false
}

// defaultTTL is the outer TTL by default and, with --ttl inherit, of
// frames that carry no IP packet: Linux's default (net.ipv4.ip_default_ttl).
const defaultTTL = 64

// inherit is the value of --ttl and --tos that takes the inner header's.
const inherit = "inherit"

func (r *rawFlags) outerHeader() (outerHeader, error) {
	o := outerHeader{TTL: defaultTTL, NoChecksum: !r.udpCsum}
	if r.ttl == inherit {
		o.InheritTTL = true
	} else {
		v, err := strconv.Atoi(r.ttl)
		if err != nil || v < 1 || v > 255 {
			return o, flagErrorf("ttl", "%q: want 1 to 255, or %s", r.ttl, inherit)
		}
		o.TTL = v
	}
	if r.tos == inherit {
		o.InheritTOS = true
	} else {
		v, err := strconv.ParseUint(r.tos, 0, 8)
		if err != nil {
			return o, flagErrorf("tos", "%q: want 0 to 255 (or 0x00 to 0xff), or %s", r.tos, inherit)
		}
		o.TOS = uint8(v)
	}
	switch r.df {
	case "set":
	case "unset":
		o.NoDF = true
	case inherit:
		o.InheritDF = true
	default:
		return o, flagErrorf("df", "%q: want set, unset or %s", r.df, inherit)
	}
	return o, nil
}

// checkFamily refuses what an underlay of addr's family cannot do.
func (o outerHeader) checkFamily(addr netip.Addr) error {
	if o.NoChecksum && addr.Is6() {
		return flagErrorf("udp-csum", "false: the IPv6 underlay (%s) always carries a UDP checksum (RFC 8200 §8.1)", addr)
	}
	return nil
}

// limits bound what a hostile container can make the daemon hold or send:
// learned MACs, local MACs published to etcd, and flooded frames.
type limits struct {
	FDBMax                                   int
	LocalMACMax, LocalMACRate, LocalMACBurst int
	FloodRate, FloodBurst, FloodRateTotal    int
}

func (l limits) validate() error {
	for _, f := range []struct {
		flag string
		v    int
	}{{"fdb-max", l.FDBMax}, {"local-mac-max", l.LocalMACMax}, {"local-mac-rate", l.LocalMACRate},
		{"flood-rate", l.FloodRate}, {"flood-rate-total", l.FloodRateTotal}} {
		if f.v < 0 {
			return flagErrorf(f.flag, "%d: must not be negative (0: no limit)", f.v)
		}
	}
	for _, f := range []struct {
		flag, rateFlag string
		burst, rate    int
	}{{"local-mac-burst", "local-mac-rate", l.LocalMACBurst, l.LocalMACRate}, {"flood-burst", "flood-rate", l.FloodBurst, l.FloodRate}} {
		if f.burst < 1 && f.rate > 0 {
			return flagErrorf(f.flag, "%d: must be at least 1 while --%s is set", f.burst, f.rateFlag)
		}
	}
	return nil
}

// apply sets the limits on the data plane's configuration and its table.
func (l limits) apply(ov *overlay.Config, table *fdb.Table) {
	table.LimitLearned(l.FDBMax)
	ov.FloodPerSource = ratelimit.NewLimit(l.FloodRate, l.FloodBurst)
	ov.FloodTotal = ratelimit.NewLimit(l.FloodRateTotal, l.FloodRateTotal)
}

// localTable returns the table of local MACs for the control plane.
func (l limits) localTable() *fdb.LocalTable {
	return fdb.NewLocalTable(fdb.LocalLimits{Max: l.LocalMACMax, NewMACs: ratelimit.NewLimit(l.LocalMACRate, l.LocalMACBurst)})
}

// offloads are the fast-path mechanisms --offload turns on. Each falls
// back by itself, with one log line, when the kernel refuses it.
type offloads struct {
	TSO, GSO, GRO, Batch bool
}

func parseOffloads(list []string) (offloads, error) {
	var o offloads
	for _, v := range list {
		switch strings.TrimSpace(v) {
		case "all":
			o = offloads{TSO: true, GSO: true, GRO: true, Batch: true}
		case "none", "":
		case "tso":
			o.TSO = true
		case "gso":
			o.GSO = true
		case "gro":
			o.GRO = true
		case "batch":
			o.Batch = true
		default:
			return o, flagErrorf("offload", "%q: want tso, gso, gro, batch, all or none", v)
		}
	}
	return o, nil
}

// validateMode checks the flags that depend on --mode. In flannel mode the
// VNI, the port and the MTU come from the network config in etcd, and the
// TAP is named flannel.<VNI> unless --tap says otherwise.
func (r *rawFlags) validateMode(c *config) error {
	changed := r.changed
	if changed == nil {
		changed = func(string) bool { return false }
	}
	switch r.mode {
	case modeL2:
		c.Mode = modeL2
		for _, f := range []string{"public-ip", "subnet-file", "healthz-listen"} {
			if changed(f) {
				return flagErrorf(f, "needs --mode=flannel")
			}
		}
		return nil
	case modeFlannel:
		c.Mode = modeFlannel
	default:
		return flagErrorf("mode", "%q: must be %s or %s", r.mode, modeL2, modeFlannel)
	}
	for _, f := range []struct{ flag, why string }{
		{"vni", "the VNI is Backend.VNI of the network config in etcd"},
		{"port", "the port is Backend.Port of the network config in etcd"},
		{"bridge", "the TAP is routed, not bridged"},
		{"tap-mtu", "the TAP is routed: the kernel answers packets larger than its MTU itself"},
		{"peer", "the nodes are the subnet leases in etcd"},
		{"embedded-etcd", "run etcd on its own; the network config must be written to it first"},
		{"lease-ttl", "subnet leases last 24h, as flannel's"},
	} {
		if changed(f.flag) {
			return flagErrorf(f.flag, "does not apply with --mode=flannel: %s", f.why)
		}
	}
	if len(c.EtcdEndpoints) == 0 {
		return usagef("--etcd-endpoints: --mode=flannel needs the etcd that holds the flannel network")
	}
	if !changed("etcd-prefix") {
		c.EtcdPrefix = flannelPrefix
	}
	if !changed("tap") {
		c.TAP = "" // flannel.<VNI>, once the network config is read
	}
	if c.LocalIP.IsValid() && !c.LocalIP.Is4() {
		return flagErrorf("local-ip", "%s: flannel mode needs an IPv4 underlay", c.LocalIP)
	}
	if r.publicIP != "" {
		ip, err := netip.ParseAddr(r.publicIP)
		if err != nil || !ip.Unmap().Is4() || !ip.Unmap().IsGlobalUnicast() {
			return flagErrorf("public-ip", "%q: must be a unicast IPv4 address", r.publicIP)
		}
		c.PublicIP = ip.Unmap()
	}
	if r.subnetFile == "" || strings.HasSuffix(r.subnetFile, "/") {
		return flagErrorf("subnet-file", "%q: must name a file", r.subnetFile)
	}
	c.SubnetFile = r.subnetFile
	if r.healthzListen != "" {
		if err := checkListen("healthz-listen", r.healthzListen, "127.0.0.1:8471"); err != nil {
			return err
		}
		c.HealthzListen = r.healthzListen
	}
	return nil
}

// checkListen checks the TCP listen address addr of flag: host:port with
// a numeric port, as in example. Whether the host is this one's is found
// when listening.
func checkListen(flag, addr, example string) error {
	_, port, err := net.SplitHostPort(addr)
	if p, perr := strconv.Atoi(port); err != nil || perr != nil || p < 0 || p > 65535 {
		return flagErrorf(flag, "%q: want host:port, e.g. %s", addr, example)
	}
	return nil
}

// parsePoll parses --poll: a duration of 0 or more, or always.
func parsePoll(v string) (time.Duration, error) {
	if v == "always" {
		return poller.PollAlways, nil
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		return 0, flagErrorf("poll", "%q: want a duration such as 50us or 1ms, 0 (off) or always", v)
	case d < 0:
		return 0, flagErrorf("poll", "%s: must not be negative", v)
	}
	return d, nil
}
