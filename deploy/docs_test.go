package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The deployment docs.
var deployDocs = []string{"docs/kubernetes.md", "docs/vms.md"}

var (
	// codeSpan is `text`; link is [text](target).
	codeSpan = regexp.MustCompile("`([^`\n]+)`")
	link     = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	testName = regexp.MustCompile(`\bTest[A-Z]\w*`)
)

// TestDocsNameRealFiles checks that every repository path the deployment
// docs name exists: a code span whose first element is a top-level file
// or directory of the repository (`deploy/kube-vxland.yml`, `Dockerfile`),
// or a relative link. And that every test they cite exists.
func TestDocsNameRealFiles(t *testing.T) {
	top := map[string]bool{}
	entries, err := os.ReadDir(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") || e.Name() == ".dockerignore" {
			top[e.Name()] = true
		}
	}
	for _, doc := range deployDocs {
		b, err := os.ReadFile(filepath.Join(repoRoot, doc))
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		var named int
		for _, m := range codeSpan.FindAllStringSubmatch(text, -1) {
			for _, word := range strings.Fields(m[1]) {
				word = strings.TrimRight(word, ",.:;")
				first, _, _ := strings.Cut(word, "/")
				if !top[first] || strings.ContainsAny(word, "<>$*") {
					continue
				}
				named++
				if _, err := os.Stat(filepath.Join(repoRoot, word)); err != nil {
					t.Errorf("%s names %s, which is not in the repository", doc, word)
				}
			}
		}
		for _, m := range link.FindAllStringSubmatch(text, -1) {
			target, _, _ := strings.Cut(m[1], "#")
			if target == "" || strings.Contains(target, "://") {
				continue
			}
			named++
			if _, err := os.Stat(filepath.Join(repoRoot, filepath.Dir(doc), target)); err != nil {
				t.Errorf("%s links to %s, which is not in the repository", doc, target)
			}
		}
		if named == 0 {
			t.Errorf("%s names no repository file: the check found nothing to check", doc)
		}
		for _, name := range testName.FindAllString(text, -1) {
			if !testDefined(t, name) {
				t.Errorf("%s cites %s, which no test file of the repository defines", doc, name)
			}
		}
	}
}

// testDefined reports whether a _test.go file under the repository
// defines the test name.
func testDefined(t *testing.T, name string) bool {
	t.Helper()
	def := "func " + name + "(t *testing.T)"
	var found bool
	filepath.WalkDir(repoRoot, func(path string, d os.DirEntry, err error) error {
		if err != nil || found {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != repoRoot {
			return filepath.SkipDir
		}
		if strings.HasSuffix(path, "_test.go") {
			b, err := os.ReadFile(path)
			found = err == nil && strings.Contains(string(b), def)
		}
		return nil
	})
	return found
}
