package overlay_test

import (
	"bytes"
	"encoding/binary"
	"maps"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/vxland/vxland/encap"
	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/fdb"
	"github.com/vxland/vxland/overlay/offload"
	"github.com/vxland/vxland/overlay/overlaytest"
)

// A fuzz input is a batch: per packet a tag byte, a big-endian 16-bit
// length and the packet. The tag picks the sender of a datagram.
const (
	fuzzBatch     = 8
	fuzzMaxPacket = 4096
)

func fuzzInput(tags []byte, pkts [][]byte) []byte {
	var b []byte
	for i, p := range pkts {
		b = append(b, tags[i])
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
		b = append(b, p...)
	}
	return b
}

func splitFuzzInput(b []byte) (tags []byte, pkts [][]byte) {
	for len(b) >= 3 && len(pkts) < fuzzBatch {
		n := min(int(binary.BigEndian.Uint16(b[1:3])), len(b)-3, fuzzMaxPacket)
		tags = append(tags, b[0])
		pkts = append(pkts, b[3:3+n])
		b = b[3+n:]
	}
	return tags, pkts
}

// FuzzDecapStep feeds one receive step a batch of datagrams from two
// known VTEPs and a stranger. The device must get, in order, exactly the
// frames that CheckDatagram accepts and whose checksum is not corrupt,
// completed as FixChecksum completes them; every other datagram is
// counted under the reason CheckDatagram gives; each delivered frame's
// source is learned behind its sender, unless a static entry has it.
func FuzzDecapStep(f *testing.F) {
	good := vxlanPacket(testVNI, udpFrame(f, macA, localMAC, 20))
	partial := udpFrame(f, macB, localMAC, 30)
	binary.BigEndian.PutUint16(partial[40:42], 0x1234) // a checksum that does not verify
	f.Add(fuzzInput([]byte{0, 1, 2}, [][]byte{good, vxlanPacket(testVNI, partial), good}))
	f.Add(fuzzInput([]byte{0, 0, 1}, [][]byte{good[:20], vxlanPacket(testVNI+1, partial), vxlanPacket(testVNI, udpFrame(f, localMAC, macA, 0))}))
	senders := []netip.AddrPort{netip.AddrPortFrom(peer1, 4789), netip.AddrPortFrom(peer2, 4789), netip.AddrPortFrom(stranger, 4789)}
	f.Fuzz(func(t *testing.T, data []byte) {
		tags, pkts := splitFuzzInput(data)
		r, _ := newBatchRig(t)
		var want [][]byte
		wantDrops := map[string]uint64{}
		learned := map[fdb.MAC]netip.Addr{}
		for i, pkt := range pkts {
			src := senders[int(tags[i])%len(senders)]
			r.conn.Inject(pkt, src)
			frame, reason, ok := overlay.CheckDatagram(bytes.Clone(pkt), testVNI, src.Addr() != stranger, localMAC)
			if !ok {
				wantDrops[reason.String()]++
				continue
			}
			if offload.FixChecksum(frame) == offload.ChecksumBad {
				wantDrops[overlay.DropInnerChecksum.String()]++
				continue
			}
			want = append(want, frame)
			if mac := fdb.MAC(frame[6:12]); mac != macB { // a static entry is not moved by learning
				learned[mac] = src.Addr()
			}
		}
		if len(pkts) > 0 {
			if err := r.decap(); err != nil {
				t.Fatal(err)
			}
		}
		got := r.dev.Written()
		if len(got) != len(want) {
			t.Fatalf("%d frames written, want %d", len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("frame %d:\n% x\nwant\n% x", i, got[i], want[i])
			}
		}
		st := r.ov.Stats()
		if st.RxPackets != uint64(len(want)) {
			t.Fatalf("rx_packets = %d, want %d", st.RxPackets, len(want))
		}
		checkDrops(t, st, wantDrops)
		learned[macB] = peer2
		for mac, src := range learned {
			if v, ok := r.fdb.Lookup(testVNI, mac); !ok || v.AddrPort().Addr() != src {
				t.Fatalf("%v not learned behind %v", mac, src)
			}
		}
	})
}

// checkDrops checks that every drop reason counts what want says.
func checkDrops(t *testing.T, st overlay.Stats, want map[string]uint64) {
	t.Helper()
	for reason, n := range st.Drops {
		if n != want[reason] {
			t.Fatalf("drops %s = %d, want %d", reason, n, want[reason])
		}
	}
}

// newBatchRig is newRig with room for a fuzz batch in one step, and the
// neighbour and local tables the encapsulation consults.
func newBatchRig(t *testing.T) (*rig, *fdb.LocalTable) {
	r := &rig{dev: overlaytest.NewDevice(fuzzBatch), conn: overlaytest.NewConn(fuzzBatch), fdb: fdb.New(4789, time.Minute)}
	r.fdb.AddFlood(testVNI, peer1, fdb.SourceStatic)
	r.fdb.AddFlood(testVNI, peer2, fdb.SourceStatic)
	r.fdb.Set(testVNI, macB, peer2, fdb.OriginStatic)
	n := fdb.NewNeighbors()
	n.Set(ipB, macB)
	local := fdb.NewLocalTable(fdb.LocalLimits{})
	cfg := overlay.Config{VNI: testVNI, LocalMAC: localMAC, MTU: fuzzMTU, Neighbors: n, Local: local}
	var err error
	if r.ov, err = overlay.New(cfg, []overlay.Queue{{Device: r.dev, Conn: r.conn}}, r.fdb); err != nil {
		t.Fatal(err)
	}
	r.encap, r.decap = r.ov.EncapStepper(), r.ov.DecapStepper()
	return r, local
}

// fuzzMTU is small, so that short inputs are too big too.
const fuzzMTU = 100

// FuzzEncapStep feeds one send step a batch of frames from the device.
// A frame too short or too long for the MTU never crosses the underlay,
// and a too long one is answered with what offload.TooBig builds; an ARP
// request for a known neighbour is answered with a reply that gopacket
// reads as the owner's answer, and crosses nothing; every other frame
// leaves unchanged behind the VNI's VXLAN header, to the VTEP that owns
// its destination or to the whole flood list. Each sender is observed.
func FuzzEncapStep(f *testing.F) {
	tooBig := dfFrame(f, macA, macB, fuzzMTU)
	tooBig6 := udpFrameOver(f, true, macA, macB, fuzzMTU)
	f.Add(fuzzInput(make([]byte, 4), [][]byte{arpFrame(macA, ipA, ipB), udpFrame(f, macA, macB, 20), tooBig, arpFrame(macA, ipA, ipA)}))
	f.Add(fuzzInput(make([]byte, 4), [][]byte{tooBig6, arpFrame(macA, ipA, netip.MustParseAddr("10.200.0.9")), udpFrame(f, macA, broadcast, 0)[:13], udpFrame(f, macA, macA, 10)}))
	// Tagged frames of the longest length that fits, and one byte longer.
	tagged := vlanTagged(udpFrame(f, macA, macB, fuzzMTU-28+1))
	f.Add(fuzzInput(make([]byte, 2), [][]byte{tagged[:len(tagged)-1], tagged}))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, frames := splitFuzzInput(data)
		r, local := newBatchRig(t)
		var wantSent []overlaytest.Datagram
		var wantWritten [][]byte // nil for an ARP reply to frames[i], checked apart
		var arpRequests [][]byte
		wantDrops := map[string]uint64{}
		observed := map[fdb.MAC]bool{}
		for _, frame := range frames {
			r.dev.Inject(frame)
			maxLen := fuzzMTU + encap.EthernetHeaderLen
			if len(frame) >= 14 && frame[12] == 0x81 && frame[13] == 0 {
				maxLen += 4
			}
			switch {
			case len(frame) < encap.EthernetHeaderLen:
				wantDrops[overlay.DropTxShort.String()]++
				continue
			case len(frame) > maxLen:
				wantDrops[overlay.DropTooBig.String()]++
				answer := make([]byte, offload.TooBigFrameLen)
				if n := offload.TooBig(answer, frame, localMAC, fuzzMTU); n > 0 {
					wantWritten = append(wantWritten, answer[:n])
				}
				continue
			}
			if src := fdb.MAC(frame[6:12]); !src.IsMulticast() && !src.IsZero() && src != localMAC {
				observed[src] = true
			}
			if answeredARP(frame) {
				wantWritten = append(wantWritten, nil)
				arpRequests = append(arpRequests, frame)
				continue
			}
			pkt := vxlanPacket(testVNI, frame)
			if dst := fdb.MAC(frame[0:6]); dst == macB {
				wantSent = append(wantSent, overlaytest.Datagram{Addr: netip.AddrPortFrom(peer2, 4789), Data: pkt})
				continue
			}
			for _, v := range r.fdb.Flood(testVNI) {
				wantSent = append(wantSent, overlaytest.Datagram{Addr: v.AddrPort(), Data: pkt})
			}
		}
		if len(frames) > 0 {
			if err := r.encap(); err != nil {
				t.Fatal(err)
			}
		}
		sent := r.conn.Sent()
		if len(sent) != len(wantSent) {
			t.Fatalf("%d datagrams sent, want %d", len(sent), len(wantSent))
		}
		for i := range sent {
			if sent[i].Addr != wantSent[i].Addr || !bytes.Equal(sent[i].Data, wantSent[i].Data) {
				t.Fatalf("datagram %d to %v:\n% x\nwant to %v:\n% x", i, sent[i].Addr, sent[i].Data, wantSent[i].Addr, wantSent[i].Data)
			}
		}
		written := r.dev.Written()
		if len(written) != len(wantWritten) {
			t.Fatalf("%d frames written back, want %d", len(written), len(wantWritten))
		}
		for i := range written {
			if wantWritten[i] == nil {
				checkARPReply(t, arpRequests[0], written[i])
				arpRequests = arpRequests[1:]
			} else if !bytes.Equal(written[i], wantWritten[i]) {
				t.Fatalf("answer %d:\n% x\nwant\n% x", i, written[i], wantWritten[i])
			}
		}
		checkDrops(t, r.ov.Stats(), wantDrops)
		for _, l := range local.Snapshot() {
			delete(observed, l.MAC)
		}
		if len(observed) > 0 {
			t.Fatalf("senders not observed: %v", slices.Collect(maps.Keys(observed)))
		}
	})
}

// answeredARP says, from gopacket's reading of frame, whether the rig
// answers it: a broadcast ARP request over Ethernet for ipB, the address
// of macB, from another address and not from macB itself.
func answeredARP(frame []byte) bool {
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.NoCopy)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	arp, _ := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	if eth == nil || arp == nil || len(frame) < 42 {
		return false
	}
	return arp.AddrType == layers.LinkTypeEthernet && arp.Protocol == layers.EthernetTypeIPv4 &&
		arp.HwAddressSize == 6 && arp.ProtAddressSize == 4 && arp.Operation == layers.ARPRequest &&
		eth.DstMAC[0]&1 != 0 && !bytes.Equal(eth.SrcMAC, macB[:]) &&
		bytes.Equal(arp.DstProtAddress, ipB.AsSlice()) && !bytes.Equal(arp.SourceProtAddress, arp.DstProtAddress)
}

// checkARPReply checks, as gopacket reads it, that reply answers req as
// macB, the owner of ipB, would: to the requester, from macB, with the
// addresses swapped; bytes after the ARP packet are unchanged.
func checkARPReply(t *testing.T, req, reply []byte) {
	t.Helper()
	q := gopacket.NewPacket(req, layers.LayerTypeEthernet, gopacket.Default).Layer(layers.LayerTypeARP).(*layers.ARP)
	p := gopacket.NewPacket(reply, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	a, _ := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	switch {
	case eth == nil || a == nil:
		t.Fatalf("the ARP reply does not decode: %v", p.ErrorLayer())
	case !bytes.Equal(eth.DstMAC, q.SourceHwAddress) || !bytes.Equal(eth.SrcMAC, macB[:]):
		t.Fatalf("ARP reply from %v to %v, want from %v to %v", eth.SrcMAC, eth.DstMAC, net.HardwareAddr(macB[:]), net.HardwareAddr(q.SourceHwAddress))
	case a.Operation != layers.ARPReply || a.AddrType != layers.LinkTypeEthernet || a.Protocol != layers.EthernetTypeIPv4:
		t.Fatalf("ARP reply is operation %d, hardware %v, protocol %v", a.Operation, a.AddrType, a.Protocol)
	case !bytes.Equal(a.SourceHwAddress, macB[:]) || !bytes.Equal(a.SourceProtAddress, ipB.AsSlice()):
		t.Fatalf("ARP reply says %v is at %v", net.IP(a.SourceProtAddress), net.HardwareAddr(a.SourceHwAddress))
	case !bytes.Equal(a.DstHwAddress, q.SourceHwAddress) || !bytes.Equal(a.DstProtAddress, q.SourceProtAddress):
		t.Fatalf("ARP reply to %v %v, want %v %v", net.IP(a.DstProtAddress), net.HardwareAddr(a.DstHwAddress), net.IP(q.SourceProtAddress), net.HardwareAddr(q.SourceHwAddress))
	case len(reply) != len(req) || !bytes.Equal(reply[42:], req[42:]):
		t.Fatal("ARP reply changed the bytes after the ARP packet")
	}
}

// vlanTagged returns frame with an 802.1Q tag (VLAN 7).
func vlanTagged(frame []byte) []byte {
	return slices.Concat(frame[:12], []byte{0x81, 0x00, 0x00, 0x07}, frame[12:])
}
