package netlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// trafficTimeout bounds TCPTransfer and Reach when ctx has no deadline.
const trafficTimeout = 30 * time.Second

// TCPTransfer sends n pseudo-random bytes over one TCP connection from a
// client in from to a listener in to at addr ("ip:port"; port 0 picks a free
// one) and returns an error unless exactly the bytes sent arrive (compared by
// SHA-256). Connecting is retried until ctx ends, so a path that is still
// coming up is waited for. Without a deadline in ctx it gives up after 30s.
func TCPTransfer(ctx context.Context, from, to *NS, addr string, n int) error {
	return transfer(ctx, "tcp transfer", from, to, addr, "", n, 0, nil)
}

// TCPTransferVia is TCPTransfer with a listener at listen ("ip:port") in to
// and a client in from that dials dial instead, an address that leads there
// only through a translation such as a port mapping.
func TCPTransferVia(ctx context.Context, from, to *NS, listen, dial string, n int) error {
	return transfer(ctx, "tcp transfer via "+dial, from, to, listen, dial, n, 0, nil)
}

// TCPStream is a paced TCPTransfer running in the background
// (StartTCPStream), watched at the receiver: how much arrived, and the
// longest time without progress.
type TCPStream struct {
	done     chan struct{}
	err      error
	received atomic.Int64
	mu       sync.Mutex
	last     time.Time // of the latest read; zero before the first
	maxGap   time.Duration
}

// StartTCPStream starts TCPTransfer of n bytes sent at rate bytes per
// second, in chunks of at most 16 KB.
func StartTCPStream(ctx context.Context, from, to *NS, addr string, n, rate int) *TCPStream {
	s := &TCPStream{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.err = transfer(ctx, "tcp stream", from, to, addr, "", n, rate, s)
	}()
	return s
}

// Received returns how many bytes have arrived so far.
func (s *TCPStream) Received() int64 { return s.received.Load() }

// Done is closed when the transfer has ended.
func (s *TCPStream) Done() <-chan struct{} { return s.done }

// Wait waits for the end of the transfer and returns TCPTransfer's
// verdict.
func (s *TCPStream) Wait() error {
	<-s.done
	return s.err
}

// MaxGap returns the longest time between two reads of the receiver.
func (s *TCPStream) MaxGap() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxGap
}

// observe counts n bytes just read and the time since the read before.
func (s *TCPStream) observe(n int) {
	now := time.Now()
	s.received.Add(int64(n))
	s.mu.Lock()
	if !s.last.IsZero() {
		s.maxGap = max(s.maxGap, now.Sub(s.last))
	}
	s.last = now
	s.mu.Unlock()
}

// observedReader tells a TCPStream of every read.
type observedReader struct {
	r io.Reader
	s *TCPStream
}

func (o observedReader) Read(b []byte) (int, error) {
	n, err := o.r.Read(b)
	if n > 0 {
		o.s.observe(n)
	}
	return n, err
}

// pacedReader hands out what r reads at rate bytes per second.
type pacedReader struct {
	r     io.Reader
	rate  int
	start time.Time
	sent  int
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if p.start.IsZero() {
		p.start = time.Now()
	}
	if due := p.start.Add(time.Duration(float64(p.sent) / float64(p.rate) * float64(time.Second))); time.Until(due) > 0 {
		time.Sleep(time.Until(due))
	}
	n, err := p.r.Read(b[:min(len(b), 16<<10)])
	p.sent += n
	return n, err
}

// Reach returns nil once a TCP connection from from reaches a listener on ip
// in to and carries a few bytes, retrying until ctx ends (30s without a
// deadline). It needs no tools in the namespaces.
func Reach(ctx context.Context, from, to *NS, ip string) error {
	return transfer(ctx, "reach", from, to, net.JoinHostPort(ip, "0"), "", 64, 0, nil)
}

// transfer sends n bytes from from to to at addr, dialled as dial unless
// that is "", at rate bytes per second (0: as fast as TCP goes), and tells
// stream, if any, of every read.
func transfer(ctx context.Context, op string, from, to *NS, addr, dial string, n, rate int, stream *TCPStream) (err error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, trafficTimeout)
		defer cancel()
	}
	defer func() {
		if err == nil {
			return
		}
		if cerr := context.Cause(ctx); cerr != nil {
			err = fmt.Errorf("%w (%w)", err, cerr)
		}
		err = fmt.Errorf("netlab: %s %s -> %s at %s: %w", op, from.Name, to.Name, addr, err)
	}()

	var ln net.Listener
	err = to.Do(func() error {
		var err error
		ln, err = new(net.ListenConfig).Listen(ctx, "tcp", addr)
		return err
	})
	if err != nil {
		return err
	}
	defer ln.Close()
	defer context.AfterFunc(ctx, func() { ln.Close() })()
	target := ln.Addr().String()

	type received struct {
		n   int64
		sum []byte
		err error
	}
	recv := make(chan received, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			recv <- received{err: fmt.Errorf("accept on %s: %w", target, err)}
			return
		}
		defer c.Close()
		defer context.AfterFunc(ctx, func() { c.Close() })()
		h := sha256.New()
		var src io.Reader = c
		if stream != nil {
			src = observedReader{c, stream}
		}
		got, err := io.Copy(h, src)
		recv <- received{n: got, sum: h.Sum(nil), err: err}
	}()

	if dial == "" {
		dial = target
	}
	c, err := dialUntil(ctx, from, dial)
	if err != nil {
		return err
	}
	defer c.Close()
	defer context.AfterFunc(ctx, func() { c.Close() })()

	var seed [32]byte
	rand.Read(seed[:])
	h := sha256.New()
	var data io.Reader = mrand.NewChaCha8(seed)
	if rate > 0 {
		data = &pacedReader{r: data, rate: rate}
	}
	sent, err := io.CopyN(io.MultiWriter(c, h), data, int64(n))
	if err != nil {
		return fmt.Errorf("sent %d of %d bytes: %w", sent, n, err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return fmt.Errorf("close write after %d bytes: %w", sent, err)
	}
	r := <-recv // ctx ending closes both sockets, so this cannot block forever
	switch {
	case r.err != nil:
		return fmt.Errorf("received %d of %d bytes: %w", r.n, n, r.err)
	case r.n != int64(n):
		return fmt.Errorf("received %d of %d bytes", r.n, n)
	case !bytes.Equal(r.sum, h.Sum(nil)):
		return fmt.Errorf("received %d bytes that differ from those sent: sha256 %x, sent %x", r.n, r.sum, h.Sum(nil))
	}
	return nil
}

// dialUntil connects from namespace from to target, retrying with capped
// backoff until it succeeds or ctx ends.
func dialUntil(ctx context.Context, from *NS, target string) (net.Conn, error) {
	const attemptTimeout = 2 * time.Second // covers one SYN retransmission (1s)
	backoff := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		c, err := from.Dial(actx, "tcp", target)
		cancel()
		if err == nil {
			return c, nil
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("gave up connecting after %d attempts: %w", attempt, err)
		case <-t.C:
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}
