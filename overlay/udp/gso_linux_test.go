//go:build linux

package udp_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxland/vxland/internal/netlab"
	"github.com/vxland/vxland/overlay/poller"
	"github.com/vxland/vxland/overlay/udp"
)

// TestGSORefusedFallsBack: when the kernel refuses to segment a send, the
// socket says so once, sends what was not sent yet one datagram at a
// time, and every datagram arrives once, in order; later sends go
// unsegmented without a word.
//
// The refusal is the kernel's own: it refuses UDP_SEGMENT (EINVAL) on a
// socket that must not checksum what it sends (SO_NO_CHECK), as it does
// (EIO) on a path whose device cannot checksum.
func TestGSORefusedFallsBack(t *testing.T) {
	var log netlab.LockedBuffer
	cs, err := udp.Listen(netip.MustParseAddrPort("127.0.0.1:0"), 1, udp.Options{
		Batch: 8, GSO: true, Logger: slog.New(slog.NewTextHandler(&log, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	tx := cs[0]
	defer tx.Close()
	if log.String() != "" {
		t.Skipf("the kernel refused an offload: %s", log.String())
	}
	err = tx.FD().Control(func(fd int) error {
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_NO_CHECK, 1)
	})
	if err != nil {
		t.Fatal(err)
	}
	rx := listen(t, "127.0.0.1:0", 1, udp.Options{Batch: 8})[0]

	// A datagram of its own goes in the first message, unsegmented, and
	// leaves; the run behind it is one segmented message, refused.
	first := append([][]byte{bytes.Repeat([]byte{0xaa}, 100)}, datagrams(6, 1000, 300)...)
	if err := tx.Send(first, rx.LocalAddr()); err != nil {
		t.Fatalf("Send: %v, want the datagrams sent one by one", err)
	}
	second := datagrams(4, 500, 0)
	if err := tx.SendFlow(second, rx.LocalAddr(), 7); err != nil {
		t.Fatalf("SendFlow after the refusal: %v", err)
	}
	want := append(first, second...)

	bufs, sizes, srcs := readBufs(rx)
	timeout := time.AfterFunc(5*time.Second, func() { rx.Close() })
	defer timeout.Stop()
	var got [][]byte
	for len(got) < len(want) {
		n, err := rx.Read(bufs, sizes, srcs, 0)
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", len(got), len(want), err)
		}
		for i := range n {
			got = append(got, bytes.Clone(bufs[i][:sizes[i]]))
		}
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("datagram %d: %d bytes starting %x, want %d bytes of %x", i, len(got[i]), got[i][:1], len(want[i]), want[i][0])
		}
	}
	// Nothing was sent twice: the datagram that left before the
	// refusal is not behind the others.
	time.Sleep(50 * time.Millisecond)
	if n, err := rx.TryRead(bufs, sizes, srcs, 0); !errors.Is(err, poller.ErrWouldBlock) {
		t.Fatalf("%d more datagrams (%v), want none", n, err)
	}
	if c := strings.Count(log.String(), "the kernel refused UDP segmentation offload; sending datagrams one by one"); c != 1 {
		t.Fatalf("the refusal was logged %d times, want once:\n%s", c, log.String())
	}
}
