package deploy

import (
	"debug/elf"
	"os/exec"
	"strings"
	"testing"
)

// TestStaticBinary checks the binary the container image ships (`make
// static`, as the Dockerfile builds it): no dynamic section and no
// program interpreter, so it runs in an image with no C library; and it
// runs and says its version.
func TestStaticBinary(t *testing.T) {
	vxland := staticVxland(t)
	f, err := elf.Open(vxland)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if s := f.Section(".dynamic"); s != nil {
		t.Errorf("%s has a .dynamic section: it is linked dynamically", vxland)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s has a %v program header: it needs the dynamic loader", vxland, p.Type)
		}
	}
	out, err := exec.Command(vxland, "--version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "vxland "+testVersion {
		t.Errorf("vxland --version: %q, %v; want \"vxland %s\"", out, err, testVersion)
	}
}

// TestDockerImage builds the image from the Dockerfile and runs its
// vxland --version. It needs a running Docker engine.
func TestDockerImage(t *testing.T) {
	if testing.Short() {
		t.Skip("building an image is not short")
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skipf("no Docker engine (docker info: %v): the image is not built", err)
	}
	tag := "vxland-deploytest:" + strings.ReplaceAll(strings.TrimPrefix(testVersion, "v"), "+", "-")
	out, err := exec.Command("docker", "build", "--build-arg", "VERSION="+testVersion, "-t", tag, repoRoot).CombinedOutput()
	if err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	defer exec.Command("docker", "rmi", tag).Run()
	out, err = exec.Command("docker", "run", "--rm", "--network", "none", tag, "--version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "vxland "+testVersion {
		t.Errorf("docker run %s --version: %q, %v; want \"vxland %s\"", tag, out, err, testVersion)
	}
}
