package tap_test

import (
	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/tap"
)

// A queue is what the data plane's worker serves, and it reports its drops.
var (
	_ overlay.PolledDevice = (*tap.Queue)(nil)
	_ overlay.DropReporter = (*tap.Queue)(nil)
)
