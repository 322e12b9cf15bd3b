package main

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/numberd/numberd/test/load/internal/record"
)

// Set is every run the generators recorded.
type Set struct {
	byKey  map[record.Key][]record.Run
	counts map[string]int64 // numbers received, by pool
	runs   int64
}

// NewSet returns an empty set.
func NewSet() *Set {
	return &Set{byKey: map[record.Key][]record.Run{}, counts: map[string]int64{}}
}

// Add records one run.
func (s *Set) Add(r record.Run) {
	s.byKey[r.Key] = append(s.byKey[r.Key], r)
	s.counts[r.Key.Pool] += r.Count
	s.runs++
}

// Pools lists the pools seen, sorted.
func (s *Set) Pools() []string {
	pools := make([]string, 0, len(s.counts))
	for p := range s.counts {
		pools = append(pools, p)
	}
	slices.Sort(pools)
	return pools
}

// Received is how many numbers were received from pool.
func (s *Set) Received(pool string) int64 { return s.counts[pool] }

// Dup is a range of numbers received more than once.
type Dup struct {
	Pools       [2]string // the pools of the two runs that overlap (equal within a pool)
	First, Last string
	Count       int64
}

func (d Dup) String() string {
	where := "pool " + d.Pools[0]
	if d.Pools[0] != d.Pools[1] {
		where = "pools " + d.Pools[0] + " and " + d.Pools[1]
	}
	if d.Count == 1 {
		return fmt.Sprintf("%s: %s received twice", where, d.First)
	}
	return fmt.Sprintf("%s: %s..%s (%d numbers) received twice", where, d.First, d.Last, d.Count)
}

// Dups returns the ranges received more than once, within each pool or, when
// global is set, across all pools too (for runs whose pools were given disjoint
// ranges), and the total count of numbers received more than once.
func (s *Set) Dups(global bool) ([]Dup, int64) {
	groups := map[record.Key][]record.Run{}
	for k, runs := range s.byKey {
		g := k
		if global {
			g.Pool = ""
		}
		groups[g] = append(groups[g], runs...)
	}
	var dups []Dup
	var total int64
	for _, runs := range groups {
		slices.SortFunc(runs, func(a, b record.Run) int {
			return cmp.Or(cmp.Compare(a.First, b.First), cmp.Compare(b.Count, a.Count))
		})
		// reach is the run that reaches furthest so far.
		reach := runs[0]
		for _, r := range runs[1:] {
			if r.First <= reach.Last() {
				last := min(reach.Last(), r.Last())
				n := last - r.First + 1
				total += n
				dups = append(dups, Dup{
					Pools: [2]string{reach.Key.Pool, r.Key.Pool},
					First: r.Key.Format(r.First), Last: r.Key.Format(last), Count: n,
				})
			}
			if r.Last() > reach.Last() {
				reach = r
			}
		}
	}
	slices.SortFunc(dups, func(a, b Dup) int { return cmp.Compare(a.First, b.First) })
	return dups, total
}

// Interval is an inclusive range of numbers, as the API gives segments and gaps.
type Interval struct {
	Start, End string
	What       string // for messages: "segment 3", "retired gap"
}

type span struct {
	key      record.Key
	lo, hi   int64
	what     string
	original Interval
}

func spans(pool string, ivs []Interval) ([]span, error) {
	out := make([]span, 0, len(ivs))
	for _, iv := range ivs {
		k1, lo, err := record.Parse(pool, iv.Start)
		if err != nil {
			return nil, fmt.Errorf("%s start: %w", iv.What, err)
		}
		k2, hi, err := record.Parse(pool, iv.End)
		if err != nil {
			return nil, fmt.Errorf("%s end: %w", iv.What, err)
		}
		if k1 != k2 || hi < lo {
			return nil, fmt.Errorf("%s %s..%s is not one range of one width", iv.What, iv.Start, iv.End)
		}
		out = append(out, span{key: k1, lo: lo, hi: hi, what: iv.What, original: iv})
	}
	slices.SortFunc(out, func(a, b span) int { return cmp.Compare(a.lo, b.lo) })
	return out, nil
}

// Outside returns, for pool's runs, the ranges of numbers not covered by any of
// the segments: a number numberd answered that it was never given.
func (s *Set) Outside(pool string, segments []Interval) ([]string, error) {
	segs, err := spans(pool, segments)
	if err != nil {
		return nil, err
	}
	var bad []string
	for k, runs := range s.byKey {
		if k.Pool != pool {
			continue
		}
		for _, r := range runs {
			lo := r.First
			for _, sg := range segs {
				if sg.key != k || sg.hi < lo || sg.lo > lo {
					continue
				}
				lo = sg.hi + 1 // covered up to here; segments are sorted, so the next may continue
				if lo > r.Last() {
					break
				}
			}
			if lo <= r.Last() {
				bad = append(bad, fmt.Sprintf("pool %s: %s..%s lies outside every segment", pool, k.Format(lo), k.Format(r.Last())))
			}
		}
	}
	slices.Sort(bad)
	return bad, nil
}

// Inside returns, for pool's runs, the ranges of numbers that fall inside any of
// ivs (gaps that must never have been handed out).
func (s *Set) Inside(pool string, ivs []Interval) ([]string, error) {
	gaps, err := spans(pool, ivs)
	if err != nil {
		return nil, err
	}
	var bad []string
	for k, runs := range s.byKey {
		if k.Pool != pool {
			continue
		}
		for _, r := range runs {
			for _, g := range gaps {
				if g.key != k || g.hi < r.First || g.lo > r.Last() {
					continue
				}
				lo, hi := max(g.lo, r.First), min(g.hi, r.Last())
				bad = append(bad, fmt.Sprintf("pool %s: %s..%s was received but lies in %s %s..%s",
					pool, k.Format(lo), k.Format(hi), g.what, g.original.Start, g.original.End))
			}
		}
	}
	slices.Sort(bad)
	return bad, nil
}
