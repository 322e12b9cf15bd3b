package nemesis_test

import (
	"slices"
	"time"
)

// lostRange is a range of unaccounted numbers and when it was taken: between lo
// and hi (see neighbours).
type lostRange struct {
	u      iv
	lo, hi time.Time
}

// inFlightGrace is how long after its client broke off a call may still take
// numbers: a paused node takes them when it resumes, at most a pause's excess
// over clientTimeout (1.5 s, see plan) later.
const inFlightGrace = 2 * time.Second

// explain matches the unaccounted ranges of a pool with the calls of the pool
// that broke off, each able to explain as many numbers as it asked for, taken
// while it was in flight (sent, and at most inFlightGrace after its client gave
// up). It returns what no such call explains. Greedy, by the ranges' end and the
// calls' end, as in matching points to intervals.
func explain(lost []lostRange, calls []*op) []lostRange {
	slices.SortFunc(lost, func(a, b lostRange) int { return a.hi.Compare(b.hi) })
	budget := make([]int64, len(calls))
	order := make([]int, len(calls))
	for i, c := range calls {
		budget[i], order[i] = int64(c.Count), i
	}
	slices.SortFunc(order, func(a, b int) int { return calls[a].Answered.Compare(calls[b].Answered) })
	var out []lostRange
	for _, l := range lost {
		need := l.u.size()
		for _, i := range order {
			c := calls[i]
			if need == 0 {
				break
			}
			if budget[i] == 0 || c.Sent.After(l.hi) || c.Answered.Add(inFlightGrace).Before(l.lo) {
				continue
			}
			n := min(need, budget[i])
			budget[i] -= n
			need -= n
		}
		if need > 0 {
			// The numbers left are the range's last ones; which are, does
			// not matter for the count.
			out = append(out, lostRange{iv{l.u.Hi - need + 1, l.u.Hi}, l.lo, l.hi})
		}
	}
	return out
}

// neighbours brackets when the numbers of u, which nobody was handed, were taken:
// after the number just below them was first asked for, before the number just
// above them was last answered (a number handed out twice has two times; the
// bracket takes the wider). ds are sorted by their first number, and highest[j]
// is the highest number of ds[:j+1].
func neighbours(ds []delivery, highest []int64, u iv) (lo, hi time.Time) {
	// Nobody was handed u, so the runs before i end below it and those from i
	// on start above it.
	i, _ := slices.BinarySearchFunc(ds, u.Lo, func(d delivery, x int64) int {
		if d.run.Lo < x {
			return -1
		}
		return 1
	})
	if i > 0 {
		below := highest[i-1]
		// Runs are at most a count (1000) long: those holding below start
		// no further back.
		for j := i - 1; j >= 0 && ds[j].run.Lo >= below-1000; j-- {
			if ds[j].run.Hi >= below && (lo.IsZero() || ds[j].op.Sent.Before(lo)) {
				lo = ds[j].op.Sent
			}
		}
	}
	for j := i; j < len(ds) && ds[j].run.Lo == ds[i].run.Lo; j++ {
		if ds[j].op.Answered.After(hi) {
			hi = ds[j].op.Answered
		}
	}
	if hi.IsZero() {
		hi = time.Now()
	}
	if !lo.IsZero() && lo.After(hi) {
		// The number below was handed out (again) after the one above: the
		// state was rolled back in between. Either order is possible.
		lo, hi = hi, lo
	}
	return lo, hi
}
