package docs_test

import (
	"strings"
	"testing"
)

// TestReferencesCaught shows which references the check accepts and which it
// reports, on texts made up for it and read as if they were in from.
func TestReferencesCaught(t *testing.T) {
	r := mustRepo(t)
	tests := []struct {
		from, text string
		refs, bad  int
	}{
		{"README.md", "[the design](docs/DESIGN.md#invariants-and-where-the-code-keeps-them)", 1, 0},
		{"README.md", "[the design](docs/DESIGN.md#no-such-heading)", 1, 1},
		{"README.md", "[design](DESIGN.md)", 1, 1},
		{"docs/DESIGN.md", "[performance](PERFORMANCE.md), [readme](../README.md)", 2, 0},
		{"README.md", "see `DESIGN.md`", 1, 1},
		{"README.md", "see docs/API.md", 1, 1},
		{"README.md", "notes kept in `../elsewhere/notes.md`", 1, 1},
		{"README.md", "`scripts/bench.sh`, `internal/alloc/`, `go test ./internal/refill/...`", 3, 0},
		{"README.md", "`scripts/nothing.sh` and `internal/nothing`", 2, 2},
		{"README.md", "`/v1/pools/{pool}`, `redis://host:6379/0`, `.tmp/nemesis/<run>/`, `net/http`", 0, 0},
		{"README.md", "```\n[not a link](nowhere.txt)\nscripts/gone.sh\n```", 1, 1},
		{"internal/alloc/alloc.go", "// Package alloc keeps the invariants of docs/DESIGN.md.\npackage alloc", 1, 0},
		{"internal/alloc/alloc.go", "// See DESIGN.md, and scripts/lua/allocate.lua's KEYS.\npackage alloc", 2, 1},
	}
	top := r.topDirs()
	for _, tt := range tests {
		var refs []reference
		if strings.HasSuffix(tt.from, ".go") {
			var err error
			if refs, err = goCommentRefs(tt.from, tt.text, top); err != nil {
				t.Fatal(err)
			}
		} else {
			refs = markdownRefs(tt.from, tt.text, top)
		}
		bad := 0
		for _, ref := range refs {
			if r.resolve(t, ref) != nil {
				bad++
			}
		}
		if len(refs) != tt.refs || bad != tt.bad {
			t.Errorf("%s: %q: %d references, %d unresolved (%v); want %d, %d", tt.from, tt.text, len(refs), bad, refs, tt.refs, tt.bad)
		}
	}
}
