//go:build linux

package udp

import (
	"fmt"
	"net/netip"
	"testing"
)

// With GRO a socket keeps one buffer of a coalesced read's size per
// message of its batch, and hands out views of them; without, it reads
// into its caller's buffers and keeps none.
func TestReadBuffersAreBounded(t *testing.T) {
	const batch = 64
	for _, gro := range []bool{false, true} {
		t.Run(fmt.Sprintf("gro=%v", gro), func(t *testing.T) {
			cs, err := Listen(netip.MustParseAddrPort("127.0.0.1:0"), 1, Options{Batch: batch, GRO: gro})
			if err != nil {
				t.Fatal(err)
			}
			defer cs[0].Close()
			got := 0
			for _, b := range cs[0].rbufs {
				got += cap(b)
			}
			want := 0
			if cs[0].gro {
				want = batch * (maxReadOffset + groBufSize)
			}
			if got > want {
				t.Errorf("%d bytes of read buffers, want at most %d", got, want)
			}
		})
	}
}
