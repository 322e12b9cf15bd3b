package nemesis_test

import (
	"fmt"
	"slices"
	"time"

	"github.com/numberd/numberd/test/harness"
)

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
