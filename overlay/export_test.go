package overlay

// EncapStepper and DecapStepper expose one forward step in each direction
// to the external tests, which use the in-memory device and socket of
// package overlaytest (an internal test cannot import it: it imports us).
func (o *Overlay) EncapStepper() func() error { return o.newEncapsulator(0).step }
func (o *Overlay) DecapStepper() func() error { return o.newDecapsulator(0).step }

// CheckDatagram is checkDatagram, the verdict that FuzzDecapStep expects
// the whole receive step to follow.
var CheckDatagram = checkDatagram

// DemuxStepper exposes one receive step of a Mux's queue 0.
func (m *Mux) DemuxStepper() func() error { return m.newDemux(0, m.vnis.Load()).step }

// NDFrame builds a neighbour solicitation or advertisement for the
// external tests (ndFrame).
var NDFrame = ndFrame
