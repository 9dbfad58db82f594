package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vxland/vxland/internal/netlab"
)

// mainEnv makes the test binary run vxdemo's main instead of the tests, so
// that a test can run vxdemo as a process and signal it.
const mainEnv = "VXDEMO_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		main()
	}
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// buildDir holds the vxland that vxlandBinary built.
var buildDir string

// vxlandBinary builds vxland once per test binary, from this source tree;
// go test puts its own go first in PATH.
var vxlandBinary = sync.OnceValues(func() (string, error) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("no go command to build vxland with: %w", err)
	}
	dir, err := os.MkdirTemp("", "vxdemo-test-")
	if err != nil {
		return "", err
	}
	buildDir = dir
	out, err := exec.Command(goCmd, "build", "-o", dir, "github.com/vxland/vxland/cmd/vxland").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building vxland: %w\n%s", err, out)
	}
	return filepath.Join(dir, "vxland"), nil
})

func needLab(t *testing.T) string {
	t.Helper()
	if err := netlab.Check(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	exe, err := vxlandBinary()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// The whole demo, with a short transfer, succeeds, says what it should and
// leaves no namespace behind.
func TestDemo(t *testing.T) {
	exe := needLab(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := run(ctx, []string{"--vxland", exe, "--transfer-mb", "5", "--pings", "2"}, &stdout, &stderr)
	out := stdout.String()
	t.Logf("demo took %v", time.Since(start))
	if code != exitOK {
		t.Fatalf("exit status %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr.String())
	}
	for _, want := range []string{
		// Discovery: every host floods to the two others, all in etcd.
		"h1 (10.77.0.1) sends broadcasts to: 10.77.0.2, 10.77.0.3",
		"h2 (10.77.0.2) sends broadcasts to: 10.77.0.1, 10.77.0.3",
		"h3 (10.77.0.3) sends broadcasts to: 10.77.0.1, 10.77.0.2",
		"/vxland/v1/vni/42/vtep/10.77.0.3",
		// Traffic.
		"to h2-c1 10.200.0.21  2/2 replies",
		"to h3-c2 10.200.0.32  2/2 replies",
		"5000000 bytes arrived intact",
		// FDB entries that came from etcd, and the local ARP answer.
		"02:00:00:00:02:01 dst 10.77.0.2 vni 42 self extern_learn",
		"02:00:00:00:01:01 dst 10.77.0.1 vni 42 self extern_learn",
		"/vxland/v1/vni/42/mac/02:00:00:00:03:02",
		"ARP answered locally 0 -> 1",
		// Overhead.
		"= 50 bytes",
		"1500 - 50 = 1450",
		"All namespaces deleted",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
	assertNoLeftovers(t, os.Getpid(), nil)
}

// Ctrl-C in the middle of the demo, while the vxland processes run, stops
// them and deletes every namespace; the exit status says "interrupted".
func TestInterruptCleansUp(t *testing.T) {
	exe := needLab(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "--vxland", exe, "--transfer-mb", "5")
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	defer func() {
		// Should the test fail before the signal, do not leave it running.
		select {
		case <-done:
		default:
			cmd.Process.Signal(syscall.SIGINT)
		}
	}()

	// Interrupt once two vxland processes run and the third is starting.
	var out strings.Builder
	lines := bufio.NewScanner(pipe)
	signalled := false
	for lines.Scan() {
		out.WriteString(lines.Text() + "\n")
		if !signalled && strings.HasPrefix(lines.Text(), "  h2: vxland up") {
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			signalled = true
		}
	}
	io.Copy(io.Discard, pipe)
	err = cmd.Wait()
	close(done)
	if !signalled {
		t.Fatalf("the demo never reported h2's vxland up; exit %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), stderr.String())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitInterrupted {
		t.Errorf("exit: %v, want status %d", err, exitInterrupted)
	}
	for _, want := range []string{"Interrupted (interrupt signal received)", "vxland on h1 stopped cleanly", "All namespaces deleted"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), stderr.String())
	}
	assertNoLeftovers(t, cmd.Process.Pid, vxlandPIDs(out.String()))
}

var pidRE = regexp.MustCompile(`vxland up \(pid (\d+)\)`)

// vxlandPIDs returns the vxland process IDs the demo printed.
func vxlandPIDs(out string) []int {
	var pids []int
	for _, m := range pidRE.FindAllStringSubmatch(out, -1) {
		pid, _ := strconv.Atoi(m[1])
		pids = append(pids, pid)
	}
	return pids
}

// assertNoLeftovers fails t if a namespace of vxdemo process pid or one of
// the vxland processes is left.
func assertNoLeftovers(t *testing.T, pid int, vxlands []int) {
	t.Helper()
	left, err := leftoverNamespaces(fmt.Sprintf("vxdemo%d-", pid))
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
	for _, p := range vxlands {
		if err := syscall.Kill(p, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("vxland pid %d still exists after the demo ended (kill 0: %v)", p, err)
		}
	}
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // in the error; "" for success
	}{
		{nil, ""},
		{[]string{"--transfer-mb", "0"}, "--transfer-mb"},
		{[]string{"--pings", "0"}, "--pings"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"extra"}, "unexpected argument"},
		{[]string{"--nope"}, "nope"},
	} {
		_, err := parseFlags(tc.args, io.Discard)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want one naming %s", tc.args, err, tc.want)
		}
	}
}

// Without root, vxdemo says so in one line and exits 2.
func TestNotRootExits2(t *testing.T) {
	if os.Geteuid() != 0 {
		var stderr bytes.Buffer
		if code := run(t.Context(), nil, io.Discard, &stderr); code != exitUsage || !strings.Contains(stderr.String(), "root") {
			t.Fatalf("exit %d, stderr %q; want 2 and a line about root", code, stderr.String())
		}
		return
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// go test keeps its binary in a private directory: run a copy nobody
	// may execute.
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(dir, "vxdemo")
	if err := os.WriteFile(copyPath, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", copyPath)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitUsage {
		t.Fatalf("exit: %v, want status %d; stderr: %s", err, exitUsage, stderr.String())
	}
	msg := strings.TrimSpace(stderr.String())
	if !strings.Contains(msg, "root") || strings.Contains(msg, "\n") {
		t.Fatalf("want one line about root, got %q", msg)
	}
}
