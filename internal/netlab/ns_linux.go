//go:build linux

package netlab

import (
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"runtime/debug"
	"syscall"

	"golang.org/x/sys/unix"
)

func (n *NS) do(fn func() error) error {
	target, err := unix.Open(netnsDir+"/"+n.Name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netlab: open namespace %s: %w", n.Name, err)
	}
	defer unix.Close(target)

	type outcome struct {
		err      error
		panicked bool
		value    any
		stack    []byte
	}
	done := make(chan outcome, 1)
	// A fresh goroutine, not the caller's: if the thread cannot switch back,
	// it stays locked, and the runtime destroys it when this goroutine ends.
	go func() {
		out := outcome{err: fmt.Errorf("netlab: function run in %s called runtime.Goexit (t.FailNow inside Do?)", n.Name)}
		defer func() { done <- out }()

		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			out.err = fmt.Errorf("netlab: open current namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			out.err = fmt.Errorf("netlab: enter namespace %s: %w", n.Name, err)
			return
		}
		defer func() {
			if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
				out.err = errors.Join(out.err, fmt.Errorf("netlab: leave namespace %s: %w", n.Name, err))
				return // thread stays locked and dies with this goroutine
			}
			runtime.UnlockOSThread()
		}()
		defer func() {
			if v := recover(); v != nil {
				out = outcome{panicked: true, value: v, stack: debug.Stack()}
			}
		}()
		out.err = fn()
	}()

	out := <-done
	if out.panicked {
		panic(fmt.Sprintf("netlab: panic in function run in %s: %v\n\n%s", n.Name, out.value, out.stack))
	}
	return out.err
}

// setProcAttr puts the process in its own group, so that Stop reaches its
// children too, and kills it if the test binary dies without cleaning up.
// (Pdeathsig fires when the forking thread exits; Go keeps threads alive
// unless a goroutine exits while locked to one, which StartCmd callers do not.)
func setProcAttr(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = new(syscall.SysProcAttr)
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pgid = 0
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}

// waitExited blocks until process pid has exited, without reaping it.
func waitExited(pid int) error {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func killGroup(pgid int, sig syscall.Signal) {
	_ = syscall.Kill(-pgid, sig) // ESRCH: the group is already gone
}
