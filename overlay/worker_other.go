//go:build !linux

package overlay

import "sync"

// startWorker reports false: off Linux each direction has a goroutine.
func (o *Overlay) startWorker(*sync.WaitGroup, int, func(error)) bool { return false }

// startWorker reports false: off Linux each direction has a goroutine.
func (m *Mux) startWorker(*sync.WaitGroup, int, func(error)) bool { return false }
