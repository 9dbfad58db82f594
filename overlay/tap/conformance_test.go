package tap_test

import (
	"github.com/vxland/vxland/overlay"
	"github.com/vxland/vxland/overlay/tap"
)

// A queue is what the data plane's worker serves, it reports its drops,
// and it says how large the buffers it reads into must be.
var (
	_ overlay.PolledDevice = (*tap.Queue)(nil)
	_ overlay.DropReporter = (*tap.Queue)(nil)
	_ overlay.FrameSizer   = (*tap.Queue)(nil)
)
