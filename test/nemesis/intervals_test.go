package nemesis_test

import (
	"slices"
	"testing"
)

// Sets of suffixes as sorted, disjoint, non-adjacent intervals: what the checker
// computes with, so that a pool of billions of numbers costs what its runs cost.

// union returns the set of the numbers in any of vs.
func union(vs []iv) []iv {
	s := slices.Clone(vs)
	slices.SortFunc(s, func(a, b iv) int {
		switch {
		case a.Lo < b.Lo:
			return -1
		case a.Lo > b.Lo:
			return 1
		}
		return 0
	})
	var out []iv
	for _, v := range s {
		if k := len(out) - 1; k >= 0 && v.Lo <= out[k].Hi+1 {
			out[k].Hi = max(out[k].Hi, v.Hi)
			continue
		}
		out = append(out, v)
	}
	return out
}

// subtract returns the numbers of a that are not in set (a union).
func subtract(a iv, set []iv) []iv {
	var out []iv
	lo := a.Lo
	i, _ := slices.BinarySearchFunc(set, a.Lo, func(v iv, x int64) int {
		if v.Hi < x {
			return -1
		}
		return 1
	})
	for ; i < len(set) && set[i].Lo <= a.Hi && lo <= a.Hi; i++ {
		if set[i].Lo > lo {
			out = append(out, iv{lo, set[i].Lo - 1})
		}
		lo = max(lo, set[i].Hi+1)
	}
	if lo <= a.Hi {
		out = append(out, iv{lo, a.Hi})
	}
	return out
}

// intersect returns the numbers in both a and b (unions).
func intersect(a, b []iv) []iv {
	var out []iv
	for i, j := 0, 0; i < len(a) && j < len(b); {
		lo, hi := max(a[i].Lo, b[j].Lo), min(a[i].Hi, b[j].Hi)
		if lo <= hi {
			out = append(out, iv{lo, hi})
		}
		if a[i].Hi < b[j].Hi {
			i++
		} else {
			j++
		}
	}
	return out
}

// total is how many numbers vs holds (vs disjoint).
func total(vs []iv) int64 {
	var n int64
	for _, v := range vs {
		n += v.size()
	}
	return n
}

func TestIntervals(t *testing.T) {
	u := union([]iv{{4, 7}, {1, 2}, {3, 3}, {10, 12}, {11, 20}})
	if want := []iv{{1, 7}, {10, 20}}; !slices.Equal(u, want) {
		t.Errorf("union = %v, want %v", u, want)
	}
	if got, want := subtract(iv{0, 25}, u), []iv{{0, 0}, {8, 9}, {21, 25}}; !slices.Equal(got, want) {
		t.Errorf("subtract = %v, want %v", got, want)
	}
	if got := subtract(iv{2, 6}, u); len(got) != 0 {
		t.Errorf("subtract inside = %v, want nothing", got)
	}
	if got, want := subtract(iv{8, 9}, u), []iv{{8, 9}}; !slices.Equal(got, want) {
		t.Errorf("subtract between = %v, want %v", got, want)
	}
	if got, want := intersect(u, []iv{{0, 1}, {6, 11}, {20, 30}}), []iv{{1, 1}, {6, 7}, {10, 11}, {20, 20}}; !slices.Equal(got, want) {
		t.Errorf("intersect = %v, want %v", got, want)
	}
	if got := total(u); got != 18 {
		t.Errorf("total = %d, want 18", got)
	}
}
