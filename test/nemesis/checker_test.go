package nemesis_test

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/numberd/numberd/test/harness"
)

// maxSamples bounds the examples a verdict keeps of each violation.
const maxSamples = 10

// maxBlameWindow is the longest time between a key's last good answer and its
// first differing replay for which the faults in between are blamed.
const maxBlameWindow = 10 * time.Second

// verdict is what the checker found.
type verdict struct {
	Requests   map[outcome]int
	Unexpected map[string]int // "status code" of answers outside the contract
	Malformed  int
	// Issued counts the distinct numbers handed out; Deliveries the answers
	// that handed them out (a replay that matched its first answer is none).
	Issued     int64
	Deliveries int

	// (a) numbers handed out more than once, counting every time after the first.
	Duplicates int64
	// (b) numbers handed out that lie in no segment loaded into their pool, and
	// segments numberd lists that were never loaded.
	Outside         int64
	UnknownSegments []string
	// (c) numbers below a cursor neither handed out nor in a gap, per pool, and
	// what the calls that broke off asked for, per pool.
	Unaccounted map[string]int64
	InDoubt     map[string]int64
	// Unexplained: unaccounted numbers that no call which broke off could have
	// taken, as none was in flight while they were taken: numbers consumed by
	// calls whose answer said nothing was (Redis paused past the request timeout, its queued scripts run on resume). The sharper
	// form of the check above.
	Unexplained int64
	// AboveCursor: handed out, yet at or above their segment's cursor (numberd
	// would hand them out again); InAbandoned: handed out, yet in a gap whose
	// reason says the caller was handed nothing.
	AboveCursor int64
	InAbandoned int64
	// (d) replays of a key, and those that answered other numbers than its first.
	Replays         int
	ReplaysDiffered int

	// Gaps counts the numbers in gaps by reason; GapOverlap those in two gaps.
	Gaps       map[string]int64
	GapOverlap int64
	// ByKind attributes each violation to the kinds of the faults around it:
	// check → kind → numbers (for replays: keys). See blameWindow, blameLatest
	// and blameStarted for which faults each check blames.
	ByKind map[string]map[kind]int64

	// Set by the test, not the checker: nodes not ready and pools not served
	// after the healing; steps of the nemesis that failed.
	NotReady     []string
	NotRecovered []string
	NemesisErrs  []string

	Samples map[string][]string
}

func (v *verdict) sample(check, format string, args ...any) {
	if len(v.Samples[check]) < maxSamples {
		v.Samples[check] = append(v.Samples[check], fmt.Sprintf(format, args...))
	}
}

func (v *verdict) blame(check string, k kind, n int64) {
	if v.ByKind[check] == nil {
		v.ByKind[check] = map[kind]int64{}
	}
	v.ByKind[check][k] += n
}

// Names of the checks, as the report and ByKind use them.
const (
	checkDuplicates  = "(a) duplicates"
	checkOutside     = "(b) outside a loaded segment"
	checkUnaccounted = "(c) unaccounted"
	checkUnexplained = "(c) unaccounted, no call that broke off in flight"
	checkAbove       = "(c) handed out at or above the cursor"
	checkAbandoned   = "(c) handed out yet in an abandoned gap"
	checkReplays     = "(d) replays that differed"
	checkAnswers     = "answers outside the contract"
)

// failures lists the checks that failed, each with its count.
func (v *verdict) failures() []string {
	var out []string
	add := func(cond bool, format string, args ...any) {
		if cond {
			out = append(out, fmt.Sprintf(format, args...))
		}
	}
	add(v.Duplicates > 0, "%s: %d numbers handed out more than once", checkDuplicates, v.Duplicates)
	add(v.Outside > 0, "%s: %d numbers", checkOutside, v.Outside)
	add(len(v.UnknownSegments) > 0, "%s: segments listed that were never loaded: %v", checkOutside, v.UnknownSegments)
	for _, pool := range slices.Sorted(maps.Keys(v.Unaccounted)) {
		add(v.Unaccounted[pool] > v.InDoubt[pool], "%s: pool %s: %d numbers neither handed out nor in a gap, more than the %d asked for by calls that broke off",
			checkUnaccounted, pool, v.Unaccounted[pool], v.InDoubt[pool])
	}
	add(v.Unexplained > 0, "%s: %d numbers were taken while no call that broke off was in flight to take them", checkUnexplained, v.Unexplained)
	add(v.AboveCursor > 0, "%s: %d numbers", checkAbove, v.AboveCursor)
	add(v.InAbandoned > 0, "%s: %d numbers", checkAbandoned, v.InAbandoned)
	add(v.ReplaysDiffered > 0, "%s: %d of %d replays", checkReplays, v.ReplaysDiffered, v.Replays)
	unexpected := 0
	for _, n := range v.Unexpected {
		unexpected += n
	}
	add(unexpected > 0, "%s: %d (%v)", checkAnswers, unexpected, v.Unexpected)
	add(v.Malformed > 0, "%s: %d malformed 200s", checkAnswers, v.Malformed)
	add(len(v.NotReady) > 0, "nodes not ready after the faults were healed: %v", v.NotReady)
	add(len(v.NotRecovered) > 0, "pools not served after the faults were healed: %v", v.NotRecovered)
	add(len(v.NemesisErrs) > 0, "nemesis steps that failed (the faults were not as planned): %v", v.NemesisErrs)
	return out
}

// delivery is one answer that handed numbers out: a 200 without a key, or the
// first 200 of a key (and any replay of it that answered other numbers).
type delivery struct {
	run iv
	op  *op
}

// check is the checker: it reads the history of every request, the pools' state
// at the end (segments with cursors, gaps) and the faults, and returns what it
// found.
func check(ops []op, states []poolState, faults []*fault) *verdict {
	v := &verdict{Requests: map[outcome]int{}, Unexpected: map[string]int{}, Unaccounted: map[string]int64{},
		InDoubt: map[string]int64{}, Gaps: map[string]int64{}, ByKind: map[string]map[kind]int64{}, Samples: map[string][]string{}}
	// blameWindow attributes n of check to every fault that was in force, or
	// ended at most two seconds before, between lo and hi.
	blameWindow := func(check string, lo, hi time.Time, n int64) {
		found := false
		for _, f := range faults {
			if f.Started.IsZero() || f.Started.After(hi) || f.Healed.Add(2*time.Second).Before(lo) {
				continue
			}
			v.blame(check, f.Kind, n)
			found = true
		}
		if !found {
			v.blame(check, "(no fault)", n)
		}
	}

	byPool := map[string][]delivery{}
	brokeOff := map[string][]*op{}
	// Per key (pool and key): its distinct answers, the first one first, and
	// when it last answered the first one. A replay is compared with the first
	// answer; an answer the key gave before is no new delivery.
	type keyState struct {
		answers   [][]iv
		lastMatch time.Time
		first     *op
	}
	keys := map[string]*keyState{}
	for i := range ops {
		o := &ops[i]
		v.Requests[o.Outcome]++
		switch o.Outcome {
		case outBrokeOff:
			v.InDoubt[o.Pool] += int64(o.Count)
			brokeOff[o.Pool] = append(brokeOff[o.Pool], o)
		case outUnexpected:
			v.Unexpected[fmt.Sprintf("%d %s", o.Status, o.Code)]++
			v.sample(checkAnswers, "op %d on %s: %d %s %s", o.ID, o.Node, o.Status, o.Code, o.Err)
		case outMalformed:
			v.Malformed++
			v.sample(checkAnswers, "op %d on %s: %s", o.ID, o.Node, o.Err)
		}
		if o.Outcome != outOK && o.Outcome != outMalformed {
			continue
		}
		if o.Key != "" {
			id := o.Pool + "\x00" + o.Key
			k, ok := keys[id]
			if !ok {
				keys[id] = &keyState{answers: [][]iv{o.Runs}, lastMatch: o.Answered, first: o}
			} else {
				v.Replays++
				if slices.Equal(k.answers[0], o.Runs) {
					k.lastMatch = o.Answered
					continue
				}
				v.ReplaysDiffered++
				if len(k.answers) == 1 {
					// The key's first difference: its record was lost or
					// replaced after it last answered its numbers.
					v.sample(checkReplays, "key %s of %s: op %d on %s answered %v, op %d on %s %v",
						o.Key, o.Pool, k.first.ID, k.first.Node, k.first.Runs, o.ID, o.Node, o.Runs)
					blameStarted(v, faults, checkReplays, k.lastMatch, o.Answered)
				}
				if slices.ContainsFunc(k.answers, func(a []iv) bool { return slices.Equal(a, o.Runs) }) {
					continue
				}
				k.answers = append(k.answers, o.Runs)
			}
		}
		v.Deliveries++
		for _, r := range o.Runs {
			byPool[o.Pool] = append(byPool[o.Pool], delivery{r, o})
		}
	}

	for _, p := range testPools {
		ds := byPool[p.name]
		slices.SortStableFunc(ds, func(a, b delivery) int {
			switch {
			case a.run.Lo < b.run.Lo:
				return -1
			case a.run.Lo > b.run.Lo:
				return 1
			}
			return 0
		})
		// (a) Sweep the runs in order: a run starting at or below the highest
		// number seen so far repeats the numbers in between.
		var covered []iv
		var top *delivery
		for i := range ds {
			d := &ds[i]
			if top != nil && d.run.Lo <= top.run.Hi {
				n := min(d.run.Hi, top.run.Hi) - d.run.Lo + 1
				v.Duplicates += n
				a, b := top.op, d.op
				v.sample(checkDuplicates, "%s: %d numbers from %s handed out by op %d (%s, %s) and op %d (%s, %s)",
					p.name, n, p.number(d.run.Lo), a.ID, a.Node, a.Answered.Format("15:04:05.000"), b.ID, b.Node, b.Answered.Format("15:04:05.000"))
				lo, hi := a.Answered, b.Answered
				if hi.Before(lo) {
					lo, hi = hi, lo
				}
				blameLatest(v, faults, checkDuplicates, lo, hi, n)
			}
			if top == nil || d.run.Hi > top.run.Hi {
				top = d
			}
			covered = append(covered, d.run)
		}
		delivered := union(covered)
		highest := make([]int64, len(ds))
		for i, d := range ds {
			highest[i] = d.run.Hi
			if i > 0 {
				highest[i] = max(highest[i], highest[i-1])
			}
		}
		v.Issued += total(delivered)

		// (b) Every number inside a loaded segment.
		loaded := union(p.segments)
		for _, d := range delivered {
			for _, out := range subtract(d, loaded) {
				v.Outside += out.size()
				v.sample(checkOutside, "%s: %s..%s", p.name, p.number(out.Lo), p.number(out.Hi))
			}
		}

		var st *poolState
		for i := range states {
			if states[i].Pool == p.name {
				st = &states[i]
			}
		}
		if st == nil {
			v.UnknownSegments = append(v.UnknownSegments, p.name+": no state read")
			continue
		}
		var gaps, abandoned []iv
		for _, g := range st.Gaps {
			lo, ok1 := p.suffix(g.Start)
			hi, ok2 := p.suffix(g.End)
			if !ok1 || !ok2 || lo > hi {
				v.UnknownSegments = append(v.UnknownSegments, fmt.Sprintf("%s: malformed gap %s..%s", p.name, g.Start, g.End))
				continue
			}
			gaps = append(gaps, iv{lo, hi})
			v.Gaps[g.Reason] += hi - lo + 1
			if g.Reason == "abandoned" {
				abandoned = append(abandoned, iv{lo, hi})
			}
		}
		gapSet := union(gaps)
		v.GapOverlap += total(gaps) - total(gapSet)
		for _, x := range intersect(delivered, union(abandoned)) {
			v.InAbandoned += x.size()
			v.sample(checkAbandoned, "%s: %s..%s", p.name, p.number(x.Lo), p.number(x.Hi))
		}
		known := union(append(slices.Clone(delivered), gapSet...))

		// (c) Below each segment's cursor every number is handed out or in a
		// gap; above it none is handed out.
		var lost []lostRange
		for _, seg := range st.Segments {
			s, cursor, err := segmentCursor(&p, seg, st)
			if err != nil {
				v.UnknownSegments = append(v.UnknownSegments, err.Error())
				continue
			}
			if !slices.Contains(p.segments, s) {
				v.UnknownSegments = append(v.UnknownSegments, fmt.Sprintf("%s: %s..%s", p.name, seg.Start, seg.End))
			}
			if cursor > s.Lo {
				for _, u := range subtract(iv{s.Lo, cursor - 1}, known) {
					v.Unaccounted[p.name] += u.size()
					lo, hi := neighbours(ds, highest, u)
					v.sample(checkUnaccounted, "%s: %s..%s (%d), consumed between %s and %s",
						p.name, p.number(u.Lo), p.number(u.Hi), u.size(), lo.Format("15:04:05.000"), hi.Format("15:04:05.000"))
					blameWindow(checkUnaccounted, lo, hi, u.size())
					lost = append(lost, lostRange{u, lo, hi})
				}
			}
			if cursor <= s.Hi {
				for _, x := range intersect([]iv{{cursor, s.Hi}}, delivered) {
					v.AboveCursor += x.size()
					v.sample(checkAbove, "%s: %s..%s, cursor %s", p.name, p.number(x.Lo), p.number(x.Hi), p.number(cursor))
				}
			}
		}
		if _, ok := v.Unaccounted[p.name]; !ok {
			v.Unaccounted[p.name] = 0
		}
		for _, l := range explain(lost, brokeOff[p.name]) {
			v.Unexplained += l.u.size()
			v.sample(checkUnexplained, "%s: %s..%s (%d), taken between %s and %s", p.name, p.number(l.u.Lo), p.number(l.u.Hi),
				l.u.size(), l.lo.Format("15:04:05.000"), l.hi.Format("15:04:05.000"))
			blameWindow(checkUnexplained, l.lo, l.hi, l.u.size())
		}
	}
	return v
}

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

// blameLatest attributes n duplicates, first handed out at lo and again at hi,
// to the latest fault of each lane that started before hi and was in force, or
// ended at most two seconds before, at lo or later: the fault that rolled the
// state back (a failover's replica may have been detached before lo).
func blameLatest(v *verdict, faults []*fault, check string, lo, hi time.Time, n int64) {
	latest := map[string]*fault{}
	for _, f := range faults {
		if f.Started.IsZero() || f.Started.After(hi) || f.Healed.Add(2*time.Second).Before(lo) {
			continue
		}
		if l := latest[f.Lane]; l == nil || f.Started.After(l.Started) {
			latest[f.Lane] = f
		}
	}
	for _, f := range latest {
		v.blame(check, f.Kind, n)
	}
	if len(latest) == 0 {
		v.blame(check, "(no fault)", n)
	}
}

// blameStarted attributes a key whose replay differed to the faults in force, or
// ended at most two seconds before, between its last answer of its first numbers
// and the replay.
func blameStarted(v *verdict, faults []*fault, check string, lo, hi time.Time) {
	// A key replayed long after its last good answer could have lost its
	// record to any of many faults: it is counted, not blamed.
	if hi.Sub(lo) > maxBlameWindow {
		v.blame(check, kind("(window over "+maxBlameWindow.String()+")"), 1)
		return
	}
	found := false
	for _, f := range faults {
		if !f.Started.IsZero() && !f.Started.After(hi) && !f.Healed.Add(2*time.Second).Before(lo) {
			v.blame(check, f.Kind, 1)
			found = true
		}
	}
	if !found {
		v.blame(check, "(no fault)", 1)
	}
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

// segmentCursor returns seg's range and its cursor, the suffix of the next number
// it would hand out: its start while queued, the pool's next while active, past
// its end once exhausted or retired.
func segmentCursor(p *poolSpec, seg harness.Segment, st *poolState) (iv, int64, error) {
	lo, ok1 := p.suffix(seg.Start)
	hi, ok2 := p.suffix(seg.End)
	if !ok1 || !ok2 || lo > hi {
		return iv{}, 0, fmt.Errorf("%s: malformed segment %s..%s", p.name, seg.Start, seg.End)
	}
	s := iv{lo, hi}
	switch seg.State {
	case "queued":
		return s, lo, nil
	case "exhausted", "retired":
		return s, hi + 1, nil
	case "active":
		a := st.Status.ActiveSegment
		if a == nil || a.ID != seg.ID {
			return s, 0, fmt.Errorf("%s: segment %s is active but the pool's status says %+v", p.name, seg.ID, a)
		}
		next, ok := p.suffix(a.Next)
		if !ok || next < lo || next > hi+1 {
			return s, 0, fmt.Errorf("%s: segment %s's next %q is not a number of it", p.name, seg.ID, a.Next)
		}
		return s, next, nil
	}
	return s, 0, fmt.Errorf("%s: segment %s has state %q", p.name, seg.ID, seg.State)
}
