// Package structure_test holds numberd's Go code to the sizes a reader can take
// in: no hand-written file over maxLines lines, and no type with more than
// maxMethods methods. A file or type past the limit is split along its seams; the
// allow-lists below name the few that wait for a split, and shrink as they get it.
package structure_test

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/numberd/numberd/internal/testenv"
)

const (
	maxLines   = 450
	maxMethods = 25
)

// Files allowed over maxLines, by slash-separated path from the repository's root.
var longFiles = map[string]bool{}

// Types allowed over maxMethods, as directory.Type from the repository's root.
var bigTypes = map[string]bool{}

// limit is one of the rules: at most max of unit per name, but for the allowed.
type limit struct {
	max     int
	allowed map[string]bool
	list    string // the allow-list's name
	unit    string
	fix     string // what to do about a name over max
}

var (
	fileLimit = limit{max: maxLines, allowed: longFiles, list: "longFiles", unit: "lines", fix: "split it along its seams"}
	typeLimit = limit{max: maxMethods, allowed: bigTypes, list: "bigTypes", unit: "methods", fix: "give its jobs types of their own"}
)

// check fails t for each name over the limit and not allowed, and for each
// allowed name now within it, so that the allow-list only ever shrinks.
func (l limit) check(t *testing.T, counts map[string]int) {
	t.Helper()
	for _, name := range sortedKeys(counts) {
		switch n := counts[name]; {
		case n > l.max && !l.allowed[name]:
			t.Errorf("%s has %d %s, more than %d: %s", name, n, l.unit, l.max, l.fix)
		case n <= l.max && l.allowed[name]:
			t.Errorf("%s has %d %s now: take it off %s", name, n, l.unit, l.list)
		}
	}
	for name := range l.allowed {
		if _, ok := counts[name]; !ok {
			t.Errorf("%s is in %s but is not in the code", name, l.list)
		}
	}
}

func TestFilesAreShort(t *testing.T) {
	lines := map[string]int{}
	for _, f := range mustParse(t) {
		lines[f.path] = f.lines
	}
	fileLimit.check(t, lines)
}

func TestTypesHaveFewMethods(t *testing.T) {
	// A package and its external tests share a directory, not their types.
	type declared struct{ dir, pkg, typ string }
	methods := map[declared]int{}
	for _, f := range mustParse(t) {
		for _, d := range f.ast.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv != nil {
				methods[declared{f.dir, f.ast.Name.Name, receiver(fd)}]++
			}
		}
	}
	counts := map[string]int{}
	for k, n := range methods {
		counts[k.dir+"."+k.typ] = max(counts[k.dir+"."+k.typ], n)
	}
	typeLimit.check(t, counts)
}

// receiver names the type a method is declared on, generic or not.
func receiver(fd *ast.FuncDecl) string {
	t := fd.Recv.List[0].Type
	if star, ok := t.(*ast.StarExpr); ok {
		t = star.X
	}
	switch x := t.(type) {
	case *ast.IndexExpr:
		t = x.X
	case *ast.IndexListExpr:
		t = x.X
	}
	if id, ok := t.(*ast.Ident); ok {
		return id.Name
	}
	return "?"
}

type goFile struct {
	path  string // slash-separated, from the repository's root
	dir   string
	lines int
	ast   *ast.File
}

// mustParse parses every hand-written Go file of the repository. Generated files
// carry the standard "Code generated ... DO NOT EDIT." line and are left out:
// their size is the generator's.
func mustParse(tb testing.TB) []goFile {
	tb.Helper()
	root := testenv.RepoRoot(tb)
	var files []goFile
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(fset, path, src, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		if ast.IsGenerated(f) {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		files = append(files, goFile{path: rel, dir: pathDir(rel), lines: countLines(src), ast: f})
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return files
}

func pathDir(rel string) string {
	if i := strings.LastIndex(rel, "/"); i >= 0 {
		return rel[:i]
	}
	return "."
}

// countLines counts lines as wc -l does, and a last line without its newline.
func countLines(src []byte) int {
	n := bytes.Count(src, []byte("\n"))
	if len(src) > 0 && src[len(src)-1] != '\n' {
		n++
	}
	return n
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
