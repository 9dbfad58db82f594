//go:build !linux

package netlab

import (
	"errors"
	"fmt"
	"os/exec"
	"syscall"
)

func (n *NS) do(func() error) error {
	return fmt.Errorf("netlab: network namespaces need Linux: %w", errors.ErrUnsupported)
}

func setProcAttr(*exec.Cmd) {}

func waitExited(int) error { return nil }

func killGroup(int, syscall.Signal) {}
