package main

import (
	"runtime/debug"
	"testing"
)

// TestSetGCPercent: the daemon collects at daemonGCPercent, unless the
// operator set GOGC, which stays as the runtime read it.
func TestSetGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	setGCPercent(func(string) string { return "" })
	if got := debug.SetGCPercent(100); got != daemonGCPercent {
		t.Errorf("without GOGC the daemon's GC percent is %d, want %d", got, daemonGCPercent)
	}
	setGCPercent(func(k string) string {
		if k == "GOGC" {
			return "100"
		}
		return ""
	})
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC=100 set, the daemon's GC percent is %d, want it left at 100", got)
	}
}
