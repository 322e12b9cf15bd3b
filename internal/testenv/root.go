package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// RepoRoot returns the repository's root: the nearest directory above the test's
// own that holds go.mod. Tests that read the repository's files start from it.
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}
