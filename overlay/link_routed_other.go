//go:build !linux

package overlay

import "github.com/vxland/vxland/overlay/fdb"

// SetupRoutedTAP is not supported on this OS.
func SetupRoutedTAP(tap string, mac fdb.MAC, mtu int) error { return errNotLinux }
