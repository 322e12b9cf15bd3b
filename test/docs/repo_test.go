package docs_test

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/numberd/numberd/internal/testenv"
)

// repo is the set of the repository's files and directories, by slash-separated
// path from its root.
type repo struct {
	root  string
	files map[string]bool
	dirs  map[string]bool
}

// mustRepo lists the repository this test runs in: the files git tracks, and
// those it would add (a change under way counts as much as what is committed),
// or, outside a git checkout, every file below the root but for build output.
func mustRepo(tb testing.TB) *repo {
	tb.Helper()
	root := testenv.RepoRoot(tb)
	names, err := gitFiles(root)
	if err != nil {
		tb.Logf("listing the files without git: %v", err)
		if names, err = walkFiles(root); err != nil {
			tb.Fatal(err)
		}
	}
	r := &repo{root: root, files: map[string]bool{}, dirs: map[string]bool{".": true}}
	for _, name := range names {
		// git still lists a tracked file deleted in the work tree.
		if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(name))); err != nil {
			continue
		}
		r.files[name] = true
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			r.dirs[dir] = true
		}
	}
	return r
}

func gitFiles(root string) ([]string, error) {
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, b := range bytes.Split(out, []byte{0}) {
		if len(b) > 0 {
			names = append(names, string(b))
		}
	}
	return names, nil
}

// walkFiles is gitFiles for a tree without git: what .gitignore leaves out is
// skipped by name.
func walkFiles(root string) ([]string, error) {
	var names []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			switch rel {
			case ".git", ".tmp", "bin":
				return filepath.SkipDir
			}
			return nil
		}
		names = append(names, rel)
		return nil
	})
	return names, err
}

// withExt lists the repository's files whose names end in ext.
func (r *repo) withExt(ext string) []string {
	var out []string
	for name := range r.files {
		if strings.HasSuffix(name, ext) {
			out = append(out, name)
		}
	}
	return out
}

// read returns the text of the repository's file name.
func (r *repo) read(tb testing.TB, name string) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(r.root, filepath.FromSlash(name)))
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// has reports whether p, a clean slash-separated path from the root, is a file
// or directory of the repository.
func (r *repo) has(p string) bool { return r.files[p] || r.dirs[p] }

// topDirs are the repository's top-level directories, whose names start the
// paths a text may mention without a known extension (`internal/alloc`).
func (r *repo) topDirs() map[string]bool {
	out := map[string]bool{}
	for dir := range r.dirs {
		if dir != "." && !strings.Contains(dir, "/") {
			out[dir] = true
		}
	}
	return out
}
