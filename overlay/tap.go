package overlay

import "errors"

// ErrNoOffload is returned when the kernel refuses the TAP offloads.
var ErrNoOffload = errors.New("TAP offloads refused")
