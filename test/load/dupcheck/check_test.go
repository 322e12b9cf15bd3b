package main

import (
	"strings"
	"testing"

	"github.com/numberd/numberd/test/load/internal/record"
)

func mustSet(t *testing.T, lines ...string) *Set {
	t.Helper()
	s := NewSet()
	if err := record.Scan(strings.NewReader(strings.Join(lines, "\n")), s.Add); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDups(t *testing.T) {
	tests := []struct {
		name   string
		lines  []string
		global bool
		want   int64
	}{
		{"disjoint", []string{"N\ta\t0001:10", "N\ta\t0011:5", "N\ta\t0020:1"}, false, 0},
		{"one twice", []string{"N\ta\t0001:10", "N\ta\t0005:1"}, false, 1},
		{"overlapping runs", []string{"N\ta\t0001:10", "N\ta\t0008:10"}, false, 3},
		{"contained after a long run", []string{"N\ta\t0001:100", "N\ta\t0010:1", "N\ta\t0050:1"}, false, 2},
		{"same number in two pools, per pool", []string{"N\ta\t0001:1", "N\tb\t0001:1"}, false, 0},
		{"same number in two pools, global", []string{"N\ta\t0001:1", "N\tb\t0001:1"}, true, 1},
		{"other width is another sequence", []string{"N\ta\t0001:1", "N\ta\t00001:1"}, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, got := mustSet(t, tt.lines...).Dups(tt.global)
			if got != tt.want {
				t.Fatalf("duplicates = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestOutsideAndInside(t *testing.T) {
	s := mustSet(t, "N\ta\t0001:10", "N\ta\t0011:5", "N\ta\t0100:2")
	segs := []Interval{{Start: "0001", End: "0010", What: "segment 1"}, {Start: "0011", End: "0050", What: "segment 2"}}
	out, err := s.Outside("a", segs)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || !strings.Contains(out[0], "0100..0101") {
		t.Fatalf("Outside = %q, want one problem naming 0100..0101", out)
	}
	in, err := s.Inside("a", []Interval{{Start: "0014", End: "0020", What: "retired gap"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(in) != 1 || !strings.Contains(in[0], "0014..0015") {
		t.Fatalf("Inside = %q, want one problem naming 0014..0015", in)
	}
}
