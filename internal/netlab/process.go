package netlab

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a long-running command started in a namespace through a Lab.
// It runs in its own process group; the lab stops the whole group on Close.
type Process struct {
	NS  *NS
	Cmd *exec.Cmd

	out *LockedBuffer // nil when the caller chose Stdout and Stderr

	mu     sync.Mutex
	exited bool // the leader has exited and is about to be reaped

	done chan struct{}
	err  error // from Cmd.Wait, valid once done is closed
}

// Start starts args in n, capturing its combined output (see Output). The
// lab stops it on Close.
func (n *NS) Start(args ...string) (*Process, error) {
	return n.StartCmd(n.Command(args...))
}

// StartCmd starts cmd, which must come from n.Command, and tracks it like
// Start. If cmd has neither Stdout nor Stderr set, output is captured.
func (n *NS) StartCmd(cmd *exec.Cmd) (*Process, error) {
	if len(cmd.Args) < 5 || cmd.Args[3] != n.Name {
		return nil, fmt.Errorf("netlab: StartCmd in %s: command %q was not made by Command", n.Name, cmd.Args)
	}
	p := &Process{NS: n, Cmd: cmd, done: make(chan struct{})}
	if cmd.Stdout == nil && cmd.Stderr == nil {
		p.out = new(LockedBuffer)
		cmd.Stdout, cmd.Stderr = p.out, p.out
	}
	setProcAttr(cmd)
	// Output pipes can be held open by grandchildren; do not let Wait hang on them.
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = time.Second
	}

	l := n.lab
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, fmt.Errorf("netlab: start %q in %s: lab is closed", cmd.Args[4:], n.Name)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("netlab: start %q in %s: %w", cmd.Args[4:], n.Name, err)
	}
	l.procs = append(l.procs, p)
	go p.wait()
	return p, nil
}

// wait reaps the process. Until the leader is reaped its PID cannot be
// reused, so signals to the group (-PID) reach only our processes; once it
// has exited, whatever is left of its group is killed before reaping.
func (p *Process) wait() {
	pid := p.Cmd.Process.Pid
	waitExited(pid) // on error, fall through: Cmd.Wait reports it
	p.mu.Lock()
	p.exited = true
	killGroup(pid, syscall.SIGKILL)
	p.mu.Unlock()
	p.err = p.Cmd.Wait()
	close(p.done)
}

// Pid returns the process ID, which is also its process group ID.
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Done is closed when the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit and returns its exit error. It may be
// called any number of times, concurrently.
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

// Output returns the output captured so far, or "" if the caller chose
// where output goes.
func (p *Process) Output() string {
	if p.out == nil {
		return ""
	}
	return p.out.String()
}

// Stop sends SIGTERM to the process group, SIGKILL if the leader is still
// running after grace, and waits for it to be reaped.
func (p *Process) Stop(grace time.Duration) {
	p.signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return
	case <-t.C:
	}
	p.signal(syscall.SIGKILL)
	<-p.done
}

func (p *Process) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.exited {
		killGroup(p.Cmd.Process.Pid, sig)
	}
}

// LockedBuffer is a bytes.Buffer that a process, or a logger, may write
// while a test reads it.
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Memory returns the process's resident set size and its peak (VmRSS and
// VmHWM in /proc/PID/status), in bytes.
func (p *Process) Memory() (rss, hwm int64, err error) {
	v, err := p.statusBytes("VmRSS", "VmHWM")
	return v[0], v[1], err
}

// Resident splits the process's resident set: anon is its private
// memory (RssAnon: heap, stacks), file the pages of files it maps
// (RssFile: its executable's, shared with the page cache and dropped
// under memory pressure).
func (p *Process) Resident() (anon, file int64, err error) {
	v, err := p.statusBytes("RssAnon", "RssFile")
	return v[0], v[1], err
}

// statusBytes reads the sizes keys in kB of the process's
// /proc/PID/status, in bytes, in the order of keys.
func (p *Process) statusBytes(keys ...string) ([]int64, error) {
	out := make([]int64, len(keys))
	path := fmt.Sprintf("/proc/%d/status", p.Pid())
	b, err := os.ReadFile(path)
	if err != nil {
		return out, fmt.Errorf("netlab: %w", err)
	}
	found := 0
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		i := slices.Index(keys, k)
		if !ok || i < 0 {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return out, fmt.Errorf("netlab: %s: %q: %w", path, l, err)
		}
		out[i] = kb << 10
		found++
	}
	if found != len(keys) {
		return out, fmt.Errorf("netlab: %s lacks one of %v", path, keys)
	}
	return out, nil
}
