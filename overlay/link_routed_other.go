//go:build !linux

package overlay

// SetupRoutedTAP is not supported on this OS.
func SetupRoutedTAP(tap string, mac MAC, mtu int) error { return errNotLinux }
