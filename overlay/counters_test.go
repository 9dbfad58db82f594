package overlay

import (
	"testing"

	"github.com/vxland/vxland/overlay/fdb"
)

// dropsDevice is a device that reports drops of its own.
type dropsDevice struct{ FrameDevice }

func (dropsDevice) ReportDrops(add func(string, uint64)) { add("tap_malformed", 3) }

// Stats names every drop reason of the core, zero or not, sums the
// queues, and adds what the devices report.
func TestStatsSumQueuesAndDeviceDrops(t *testing.T) {
	o, err := New(Config{VNI: 1, MTU: 1450}, []Queue{{Device: dropsDevice{}}, {Device: dropsDevice{}}}, fdb.New(4789, 0))
	if err != nil {
		t.Fatal(err)
	}
	o.counters[0].drop(DropVNI)
	o.counters[1].dropN(DropVNI, 2)
	o.counters[0].rxPackets.Add(5)
	o.counters[1].rxPackets.Add(7)
	s := o.Stats()
	for r := range numDropReasons {
		if _, ok := s.Drops[r.String()]; !ok {
			t.Errorf("no drops[%s]", r)
		}
	}
	if len(s.Drops) != int(numDropReasons)+1 {
		t.Errorf("%d drop reasons, want the core's %d and the device's", len(s.Drops), numDropReasons)
	}
	if s.Drops["vni_mismatch"] != 3 || s.Drops["tap_malformed"] != 6 {
		t.Errorf("drops %v: want vni_mismatch 3 (1+2), tap_malformed 6 (3 per queue)", s.Drops)
	}
	if s.RxPackets != 12 || len(s.Queues) != 2 || s.Queues[0].RxPackets != 5 || s.Queues[1].RxPackets != 7 {
		t.Errorf("rx %d, queues %+v; want 12, [5 7]", s.RxPackets, s.Queues)
	}
}
