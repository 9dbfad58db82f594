//go:build linux

package tap

// USO reports whether the kernel took UDP segmentation offload, for the
// tests that need it.
func (q *Queue) USO() bool { return q.gro != nil && q.gro.UDP }

// Headroom is the offset Write needs, for the external tests.
const Headroom = headroom
