//go:build linux

package bench

import "golang.org/x/sys/unix"

// kernelRelease returns what uname -r and uname -v print.
func kernelRelease() (release, version string) {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "", ""
	}
	return unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Version[:])
}
