package bench

import (
	"bufio"
	"crypto/sha256"
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// Machine describes where the numbers were measured.
type Machine struct {
	Kernel        string `json:"kernel"`         // release, as uname -r
	KernelVersion string `json:"kernel_version"` // build, as uname -v
	Arch          string `json:"arch"`
	CPUModel      string `json:"cpu_model"`
	Cores         int    `json:"cores"`
	GoVersion     string `json:"go_version"`
	Iperf3Version string `json:"iperf3_version"`
	// Vxland identifies the measured daemon: the VCS revision Go stamped
	// into it ("+modified" for a dirty work tree) and its SHA-256 prefix.
	Vxland string `json:"vxland_build,omitempty"`
	// VxlandBase identifies the daemon of the vxland-base configuration,
	// the build Vxland is compared with, in the same way.
	VxlandBase string `json:"vxland_base_build,omitempty"`
	// Offloads are the features of the underlay veth (h1's eth0) as
	// "ethtool -k" prints them, after the underlay mode was applied.
	Offloads map[string]string `json:"underlay_offloads,omitempty"`
}

// keyOffloads are the features OffloadSummary names.
var keyOffloads = []string{
	"tx-checksumming", "tcp-segmentation-offload", "generic-segmentation-offload",
	"generic-receive-offload", "tx-udp_tnl-segmentation", "tx-udp-segmentation",
}

// OffloadSummary lists the offloads that matter here, "tso on, gro off, …".
func (m Machine) OffloadSummary() string {
	if len(m.Offloads) == 0 {
		return "unknown"
	}
	short := map[string]string{
		"tx-checksumming":              "tx-csum",
		"tcp-segmentation-offload":     "tso",
		"generic-segmentation-offload": "gso",
		"generic-receive-offload":      "gro",
	}
	var parts []string
	for _, k := range keyOffloads {
		v, ok := m.Offloads[k]
		if !ok {
			continue
		}
		name := k
		if s, ok := short[k]; ok {
			name = s
		}
		parts = append(parts, name+" "+strings.Fields(v)[0])
	}
	return strings.Join(parts, ", ")
}

// DescribeMachine fills in what the machine says about itself.
func DescribeMachine() Machine {
	m := Machine{Arch: runtime.GOARCH, Cores: runtime.NumCPU(), GoVersion: runtime.Version()}
	m.Kernel, m.KernelVersion = kernelRelease()
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if out, err := exec.Command("iperf3", "--version").Output(); err == nil {
		m.Iperf3Version, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
		if f := strings.Fields(m.Iperf3Version); len(f) >= 2 {
			m.Iperf3Version = f[0] + " " + f[1]
		}
	}
	return m
}

// describeBinary names the build of the executable at path.
func describeBinary(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(data)
	desc := fmt.Sprintf("sha256:%x", sum[:6])
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return desc
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value[:min(len(s.Value), 12)]
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+modified"
			}
		}
	}
	if rev == "" {
		return desc
	}
	return rev + modified + " " + desc
}

// parseEthtoolFeatures reads "ethtool -k" output into feature → state
// ("on", "off [fixed]", …).
func parseEthtoolFeatures(out string) map[string]string {
	feats := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, "Features for") {
			continue
		}
		if v = strings.TrimSpace(v); v != "" {
			feats[strings.TrimSpace(k)] = v
		}
	}
	return feats
}
