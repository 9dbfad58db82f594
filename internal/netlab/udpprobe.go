package netlab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// UDPProbe sends numbered UDP datagrams at a steady rate from one namespace
// to a listener in another, and records which arrived, so that a test can
// count what a fault cost: how many datagrams were lost, in which window,
// and the longest time nothing arrived.
type UDPProbe struct {
	interval time.Duration
	cancel   context.CancelFunc
	done     chan struct{}
	err      error // of the sender, valid once done is closed

	mu       sync.Mutex
	sent     int
	received []bool // by sequence number
	dups     int
	last     time.Time // of the latest arrival
	maxGap   time.Duration
	gapEnd   time.Time // when the longest gap ended
}

// ProbeWindow is a range of sequence numbers, [From, To), that a test
// reads the probe's losses in.
type ProbeWindow struct{ From, To int }

// StartUDPProbe sends one 64-byte datagram every interval from from to a
// listener on ip in to, until ctx ends or Stop is called.
func StartUDPProbe(ctx context.Context, from, to *NS, ip string, interval time.Duration) (*UDPProbe, error) {
	if interval <= 0 {
		return nil, fmt.Errorf("netlab: udp probe %s -> %s: interval %s, want > 0", from.Name, to.Name, interval)
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, fmt.Errorf("netlab: udp probe %s -> %s: %w", from.Name, to.Name, err)
	}
	var rx *net.UDPConn
	if err := to.Do(func() (err error) {
		rx, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
		return err
	}); err != nil {
		return nil, fmt.Errorf("netlab: udp probe listener in %s: %w", to.Name, err)
	}
	var tx *net.UDPConn
	if err := from.Do(func() (err error) {
		tx, err = net.DialUDP("udp", nil, rx.LocalAddr().(*net.UDPAddr))
		return err
	}); err != nil {
		rx.Close()
		return nil, fmt.Errorf("netlab: udp probe sender in %s: %w", from.Name, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &UDPProbe{interval: interval, cancel: cancel, done: make(chan struct{})}
	received := make(chan struct{})
	go func() {
		defer close(received)
		p.receive(rx)
	}()
	go func() {
		defer close(p.done)
		p.err = p.send(ctx, tx)
		tx.Close()
		// Let the last datagrams land before the listener closes.
		time.Sleep(200 * time.Millisecond)
		rx.Close()
		<-received
	}()
	return p, nil
}

func (p *UDPProbe) send(ctx context.Context, tx *net.UDPConn) error {
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	var b [64]byte
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		p.mu.Lock()
		seq := p.sent
		p.sent++
		p.received = append(p.received, false)
		p.mu.Unlock()
		binary.BigEndian.PutUint64(b[:], uint64(seq))
		// A send refused while the path is down (no route, unreachable)
		// is a lost datagram, as the fault makes it.
		if _, err := tx.Write(b[:]); err != nil && errors.Is(err, net.ErrClosed) {
			return err
		}
	}
}

func (p *UDPProbe) receive(rx *net.UDPConn) {
	var b [64]byte
	for {
		n, err := rx.Read(b[:])
		if err != nil {
			return
		}
		if n < 8 {
			continue
		}
		seq := binary.BigEndian.Uint64(b[:8])
		now := time.Now()
		p.mu.Lock()
		if seq < uint64(len(p.received)) {
			if p.received[seq] {
				p.dups++
			}
			p.received[seq] = true
		}
		if !p.last.IsZero() && now.Sub(p.last) > p.maxGap {
			p.maxGap, p.gapEnd = now.Sub(p.last), now
		}
		p.last = now
		p.mu.Unlock()
	}
}

// Sent returns the number of datagrams sent so far; it is also the
// sequence number of the next one, so that Sent before and after a fault
// delimit its ProbeWindow.
func (p *UDPProbe) Sent() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent
}

// Lost returns how many datagrams of w have not arrived (so far).
func (p *UDPProbe) Lost(w ProbeWindow) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	lost := 0
	for seq := max(w.From, 0); seq < min(w.To, len(p.received)); seq++ {
		if !p.received[seq] {
			lost++
		}
	}
	return lost
}

// Duplicates returns how many datagrams arrived more than once.
func (p *UDPProbe) Duplicates() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dups
}

// MaxGap returns the longest time between two arrivals and when it ended.
func (p *UDPProbe) MaxGap() (time.Duration, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.maxGap, p.gapEnd
}

// Stop stops sending, waits for the last datagrams and closes the
// sockets; it returns the sender's error, if any.
func (p *UDPProbe) Stop() error {
	p.cancel()
	<-p.done
	return p.err
}
