package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/vxland/vxland/internal/netlab"
)

// iperfPort is where every topology's iperf3 server listens (each topology
// is its own set of namespaces, so they do not collide).
const iperfPort = 5201

// iperfMissing is the message when iperf3 is not installed.
const iperfMissing = "iperf3 is not installed: install it with 'apt-get install iperf3' (Debian, Ubuntu) or 'dnf install iperf3' (Fedora)"

// CheckIperf3 returns an error saying what to install when iperf3 is
// missing.
func CheckIperf3() error {
	if _, err := exec.LookPath("iperf3"); err != nil {
		return fmt.Errorf("%s: %w", iperfMissing, err)
	}
	return nil
}

// iperfOutput is the part of iperf3's JSON output (-J) the bench reads.
type iperfOutput struct {
	End struct {
		SumSent     iperfSum `json:"sum_sent"`
		SumReceived iperfSum `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

type iperfSum struct {
	Seconds       float64 `json:"seconds"`
	Bytes         int64   `json:"bytes"`
	BitsPerSecond float64 `json:"bits_per_second"`
	Retransmits   int64   `json:"retransmits"`
	Packets       int64   `json:"packets"`
	LostPackets   int64   `json:"lost_packets"`
	LostPercent   float64 `json:"lost_percent"`
}

func decodeIperf(data []byte) (*iperfOutput, error) {
	var out iperfOutput
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("iperf3 output is not JSON: %w (%.200q)", err, data)
	}
	if out.Error != "" {
		return nil, fmt.Errorf("iperf3: %s", out.Error)
	}
	return &out, nil
}

// parseTCP reads an iperf3 TCP client's JSON output.
func parseTCP(data []byte, streams int) (*TCPRun, error) {
	out, err := decodeIperf(data)
	if err != nil {
		return nil, err
	}
	r := out.End.SumReceived
	if r.Seconds <= 0 || r.Bytes <= 0 {
		return nil, fmt.Errorf("iperf3: receiver got %d bytes in %gs", r.Bytes, r.Seconds)
	}
	return &TCPRun{
		Streams:       streams,
		Seconds:       r.Seconds,
		Bytes:         r.Bytes,
		BitsPerSecond: r.BitsPerSecond,
		Retransmits:   out.End.SumSent.Retransmits,
	}, nil
}

// parseUDP reads an iperf3 UDP client's JSON output. The receiver's summary
// counts the datagrams the sender numbered (packets) and the gaps it saw
// (lost), so delivered = packets − lost.
func parseUDP(data []byte, payload int) (*UDPRun, error) {
	out, err := decodeIperf(data)
	if err != nil {
		return nil, err
	}
	r := out.End.SumReceived
	if r.Seconds <= 0 || r.Packets <= 0 {
		return nil, fmt.Errorf("iperf3: receiver counted %d packets in %gs", r.Packets, r.Seconds)
	}
	return &UDPRun{
		PayloadBytes: payload,
		Seconds:      r.Seconds,
		Packets:      r.Packets,
		Lost:         r.LostPackets,
		DeliveredPPS: float64(r.Packets-r.LostPackets) / r.Seconds,
		LossPercent:  r.LostPercent,
	}, nil
}

// startIperfServer runs an iperf3 server on ip in ns, on cpus if any, and
// waits until it listens.
func startIperfServer(ctx context.Context, ns *netlab.NS, ip string, cpus []int) (*netlab.Process, error) {
	p, err := ns.Start(pinned(cpus, "iperf3", "--server", "--bind", ip, "--port", strconv.Itoa(iperfPort))...)
	if err != nil {
		return nil, err
	}
	for {
		out, err := ns.Run("ss", "-Hltn", fmt.Sprintf("sport = :%d", iperfPort))
		if err == nil && strings.TrimSpace(out) != "" {
			return p, nil
		}
		select {
		case <-p.Done():
			return nil, fmt.Errorf("iperf3 server in %s exited: %w: %s", ns, p.Wait(), p.Output())
		case <-ctx.Done():
			return nil, fmt.Errorf("iperf3 server in %s not listening: %w", ns, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// iperfClient runs an iperf3 client in ns against the server at ip and
// returns its JSON output; cpus, if any, confine it. The CPU time of pids
// is measured from right before the client starts until it exits.
func iperfClient(ctx context.Context, ns *netlab.NS, ip string, d time.Duration, cpus []int, extra []string, pids []int) ([]byte, *CPUUsage, error) {
	args := append([]string{"iperf3", "--client", ip, "--port", strconv.Itoa(iperfPort),
		"--time", strconv.Itoa(int(d / time.Second)), "--json"}, extra...)
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	var lastErr error
	// The server serves one test at a time and may need a moment after the
	// last one; try a busy or refused connection again.
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
		cmd := ns.Command(pinned(cpus, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		meter, err := startCPUMeter(pids)
		if err != nil {
			return nil, nil, err
		}
		p, err := ns.StartCmd(cmd)
		if err != nil {
			return nil, nil, err
		}
		select {
		case <-p.Done():
		case <-ctx.Done():
			p.Stop(time.Second)
			return nil, nil, fmt.Errorf("iperf3 %s in %s: %w", strings.Join(args[1:], " "), ns, ctx.Err())
		}
		usage, err := meter.stop()
		if err != nil {
			return nil, nil, err
		}
		werr := p.Wait()
		if werr == nil {
			return stdout.Bytes(), usage, nil
		}
		msg := strings.TrimSpace(stderr.String())
		if _, err := decodeIperf(stdout.Bytes()); err != nil {
			msg = strings.TrimSpace(msg + " " + err.Error())
		}
		lastErr = fmt.Errorf("iperf3 %s in %s: %w: %s", strings.Join(args[1:], " "), ns, werr, msg)
		if !strings.Contains(msg, "busy") && !strings.Contains(msg, "refused") {
			break
		}
	}
	return nil, nil, lastErr
}
