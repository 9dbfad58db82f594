//go:build !linux

package overlay

import "sync"

// startWorker reports false: off Linux each direction has a goroutine.
func (o *Overlay) startWorker(*sync.WaitGroup, int, func(error)) bool { return false }

// startWorkers returns nil: off Linux each direction has a goroutine.
func (m *Mux) startWorkers(*sync.WaitGroup, func(error)) []*muxWorker { return nil }

// muxWorker is a forwarding thread of a Mux, which only Linux has.
type muxWorker struct {
	serves *vniSet
	ended  bool
}

func (*muxWorker) wakeUp() {}
func (*muxWorker) close()  {}
