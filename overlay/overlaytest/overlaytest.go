// Package overlaytest provides in-memory implementations of the overlay's
// frame device and underlay socket, for tests and benchmarks of the data
// plane without a kernel.
//
// Both are queues: what a test injects is read by the overlay, what the
// overlay writes is recorded for the test to inspect. With Repeat set they
// hand out the same packet forever and record nothing, which lets a
// benchmark measure one forward step with no allocation of their own.
package overlaytest

import (
	"errors"
	"net"
	"net/netip"
	"sync"

	"github.com/vxland/vxland/overlay"
)

// queue is a blocking FIFO of packets with an optional endless repeat.
type queue[T any] struct {
	mu     sync.Mutex
	cond   sync.Cond
	items  []T
	repeat *T
	closed bool
}

func (q *queue[T]) init() { q.cond.L = &q.mu }

func (q *queue[T]) push(v T) {
	q.mu.Lock()
	q.items = append(q.items, v)
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *queue[T]) setRepeat(v T) {
	q.mu.Lock()
	q.repeat = &v
	q.mu.Unlock()
	q.cond.Broadcast()
}

// pop takes up to max items, waiting for at least one.
func (q *queue[T]) pop(out func(i int, v T), max int) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && q.repeat == nil && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return 0, net.ErrClosed
	}
	if q.repeat != nil && len(q.items) == 0 {
		for i := range max {
			out(i, *q.repeat)
		}
		return max, nil
	}
	n := min(max, len(q.items))
	for i := range n {
		out(i, q.items[i])
	}
	q.items = q.items[n:]
	return n, nil
}

func (q *queue[T]) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

// Device is an in-memory overlay.FrameDevice.
type Device struct {
	batch int
	in    queue[[]byte]

	mu      sync.Mutex
	written [][]byte
	discard bool
	count   int
}

var _ overlay.FrameDevice = (*Device)(nil)

// NewDevice returns a device that reads and writes up to batch frames a call.
func NewDevice(batch int) *Device {
	d := &Device{batch: max(batch, 1)}
	d.in.init()
	return d
}

// Inject queues a copy of frame to be read by the overlay.
func (d *Device) Inject(frame []byte) { d.in.push(append([]byte(nil), frame...)) }

// Repeat makes every Read return frame, once the queue is empty, and makes
// writes count without recording. For benchmarks.
func (d *Device) Repeat(frame []byte) {
	d.mu.Lock()
	d.discard = true
	d.mu.Unlock()
	d.in.setRepeat(frame)
}

// Discard makes writes count without recording, so that a benchmark's
// device allocates nothing.
func (d *Device) Discard() {
	d.mu.Lock()
	d.discard = true
	d.mu.Unlock()
}

// Written returns copies of the frames written so far.
func (d *Device) Written() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([][]byte(nil), d.written...)
}

// WriteCount returns how many frames were written.
func (d *Device) WriteCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.count
}

// Read implements overlay.FrameDevice.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return d.in.pop(func(i int, f []byte) { sizes[i] = copy(bufs[i][offset:], f) }, min(len(bufs), d.batch))
}

// ErrNoHeadroom is returned by Write when offset < overlay.Headroom: a
// TAP needs that room in front of each frame for its own header.
var ErrNoHeadroom = errors.New("overlaytest: write without headroom for a device header")

// Write implements overlay.FrameDevice.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	if offset < overlay.Headroom {
		return 0, ErrNoHeadroom
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.count += len(bufs)
	if !d.discard {
		for _, b := range bufs {
			d.written = append(d.written, append([]byte(nil), b[offset:]...))
		}
	}
	return len(bufs), nil
}

// BatchSize implements overlay.FrameDevice.
func (d *Device) BatchSize() int { return d.batch }

// Close implements overlay.FrameDevice.
func (d *Device) Close() error { d.in.close(); return nil }

// Datagram is a UDP datagram and its peer address.
type Datagram struct {
	Addr netip.AddrPort // source when received, destination when sent
	Data []byte
}

// Conn is an in-memory overlay.PacketConn.
type Conn struct {
	batch int
	in    queue[Datagram]

	mu      sync.Mutex
	sent    []Datagram
	discard bool
	count   int
}

var _ overlay.PacketConn = (*Conn)(nil)

// NewConn returns a socket that reads up to batch datagrams a call.
func NewConn(batch int) *Conn {
	c := &Conn{batch: max(batch, 1)}
	c.in.init()
	return c
}

// Inject queues a copy of pkt as received from src.
func (c *Conn) Inject(pkt []byte, src netip.AddrPort) {
	c.in.push(Datagram{Addr: src, Data: append([]byte(nil), pkt...)})
}

// Repeat makes every Read return pkt from src once the queue is empty, and
// makes sends count without recording. For benchmarks.
func (c *Conn) Repeat(pkt []byte, src netip.AddrPort) {
	c.mu.Lock()
	c.discard = true
	c.mu.Unlock()
	c.in.setRepeat(Datagram{Addr: src, Data: pkt})
}

// Discard makes sends count without recording, so that a benchmark's
// socket allocates nothing.
func (c *Conn) Discard() {
	c.mu.Lock()
	c.discard = true
	c.mu.Unlock()
}

// Sent returns copies of the datagrams sent so far.
func (c *Conn) Sent() []Datagram {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Datagram(nil), c.sent...)
}

// SendCount returns how many datagrams were sent.
func (c *Conn) SendCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count
}

// Read implements overlay.PacketConn.
func (c *Conn) Read(bufs [][]byte, sizes []int, srcs []netip.AddrPort, offset int) (int, error) {
	return c.in.pop(func(i int, d Datagram) {
		sizes[i] = copy(bufs[i][offset:], d.Data)
		srcs[i] = d.Addr
	}, min(len(bufs), c.batch))
}

// Send implements overlay.PacketConn.
func (c *Conn) Send(bufs [][]byte, dst netip.AddrPort) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count += len(bufs)
	if !c.discard {
		for _, b := range bufs {
			c.sent = append(c.sent, Datagram{Addr: dst, Data: append([]byte(nil), b...)})
		}
	}
	return nil
}

// BatchSize implements overlay.PacketConn.
func (c *Conn) BatchSize() int { return c.batch }

// Close implements overlay.PacketConn.
func (c *Conn) Close() error { c.in.close(); return nil }
