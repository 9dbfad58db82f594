//go:build linux

package overlay

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay/fdb"
	"github.com/vxland/vxland/overlay/tap"
	"github.com/vxland/vxland/overlay/udp"
)

// The buffers a queue keeps are sized to what they hold: a 64 KB buffer
// for each datagram or packet one system call can receive whole, and no
// buffer for a slot the socket fills with a view of its own memory (a
// coalesced GRO read). Thousands of idle 64 KB buffers per queue made the
// Go heap ten times the resident memory.
func TestQueueBuffersAreBounded(t *testing.T) {
	const batch = 64 // cmd/vxland's recvmmsg batch
	for _, c := range []struct {
		offload, gro bool
		// decap bounds the decapsulator's buffers (the socket's own are
		// bounded by its tests), encap the encapsulator's.
		decap, encap int
	}{
		// With offloads every slot holds one segment of the MTU.
		{offload: true, gro: true, decap: 0, encap: 2 * 160 * (Headroom + 1450 + 18)},
		{offload: true, gro: false, decap: batch * (Headroom + MaxFrameSize), encap: 2 * 160 * (Headroom + 1450 + 18)},
		// Without, a plain read(2) takes a frame of the link's MTU,
		// which may be up to 64 KB.
		{offload: false, gro: true, decap: 0, encap: 64 * (Headroom + MaxFrameSize)},
	} {
		t.Run(fmt.Sprintf("offload=%v,gro=%v", c.offload, c.gro), func(t *testing.T) {
			ns, err := netlab.NewForTest(t).Namespace("bufs")
			if err != nil {
				t.Fatal(err)
			}
			var dev *tap.Device
			if err := ns.Do(func() (err error) {
				dev, err = tap.Open("vxbufs0", tap.Options{Queues: 1, Offload: c.offload, MTU: 1450})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer dev.Close()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			conns, err := udp.Listen(netip.MustParseAddrPort("127.0.0.1:0"), 1, udp.Options{Batch: batch, GSO: true, GRO: c.gro})
			if err != nil {
				t.Fatal(err)
			}
			defer conns[0].Close()
			o, err := New(Config{VNI: 1, MTU: 1450}, []Queue{{Device: dev.Queues()[0], Conn: conns[0]}}, fdb.New(4789, 0))
			if err != nil {
				t.Fatal(err)
			}
			e, d := o.newEncapsulator(0), o.newDecapsulator(0)
			runtime.GC()
			runtime.ReadMemStats(&after)
			runtime.KeepAlive(e)
			runtime.KeepAlive(d)
			t.Logf("heap in use for one queue: %d KiB", (int64(after.HeapInuse)-int64(before.HeapInuse))>>10)

			if got := bufferBytes(d.bufs); got > c.decap {
				t.Errorf("receive buffers: %d bytes, want at most %d", got, c.decap)
			}
			if got := bufferBytes(e.bufs); got > c.encap {
				t.Errorf("send buffers: %d bytes, want at most %d", got, c.encap)
			}
		})
	}
}

// bufferBytes is the memory of a batch's buffers.
func bufferBytes(bufs [][]byte) int {
	n := 0
	for _, b := range bufs {
		n += cap(b)
	}
	return n
}

// viewDevice hands out every frame as a view of its own memory, a frame
// longer than the MTU, as a TAP with offloads hands out an oversize one.
type viewDevice struct{ frame []byte }

func (d *viewDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	bufs[0], sizes[0] = d.frame, len(d.frame)-offset
	return 1, nil
}
func (d *viewDevice) Write(bufs [][]byte, offset int) (int, error) { return len(bufs), nil }
func (d *viewDevice) BatchSize() int                               { return 4 }
func (d *viewDevice) FrameLen() int                                { return 1500 }
func (d *viewDevice) Close() error                                 { return nil }

// A view the device handed out is the device's until its next Read: the
// encapsulator reads the next batch into its own buffers again.
func TestEncapsulatorTakesBackItsBuffers(t *testing.T) {
	conns, err := udp.Listen(netip.MustParseAddrPort("127.0.0.1:0"), 1, udp.Options{Batch: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer conns[0].Close()
	dev := &viewDevice{frame: make([]byte, Headroom+9000)}
	o, err := New(Config{VNI: 1, MTU: 1450}, []Queue{{Device: dev, Conn: conns[0]}}, fdb.New(4789, 0))
	if err != nil {
		t.Fatal(err)
	}
	e := o.newEncapsulator(0)
	if got, want := cap(e.bufs[0]), Headroom+dev.FrameLen(); got != want {
		t.Fatalf("buffers of %d bytes, want %d (the device's FrameLen)", got, want)
	}
	if err := e.step(); err != nil {
		t.Fatal(err)
	}
	if &e.bufs[0][0] != &e.own[0][0] {
		t.Error("after a batch that ended in a view, the next would be read into the device's memory")
	}
	if got := o.Stats().Drops[DropTooBig.String()]; got != 1 {
		t.Errorf("%d frames dropped as too big, want the one view", got)
	}
}
