package nemesis_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/numberd/numberd/test/harness"
)

// queuedState is the state of pool p with its first segment active at next and
// the others queued, with gaps.
func queuedState(p *poolSpec, next int64, gaps ...harness.Gap) poolState {
	st := poolState{Pool: p.name, Gaps: gaps}
	for i, s := range p.segments {
		seg := harness.Segment{ID: fmt.Sprint(i + 1), Start: p.number(s.Lo), End: p.number(s.Hi), State: "queued"}
		if i == 0 && next > s.Lo {
			seg.State = "active"
			st.Status.ActiveSegment = &harness.ActiveSegment{ID: seg.ID, Start: seg.Start, End: seg.End, Next: p.number(next)}
		}
		st.Segments = append(st.Segments, seg)
	}
	return st
}

// TestChecker feeds the checker a history with one violation of each kind, and
// one with none: it must find each, count it right, and blame the fault around it.
func TestChecker(t *testing.T) {
	p := &testPools[0]
	t0 := time.Now()
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	ok := func(id int64, sent float64, key string, replay bool, runs ...iv) op {
		n := 0
		for _, r := range runs {
			n += int(r.size())
		}
		return op{ID: id, Node: "node1", Pool: p.name, Key: key, Replay: replay, Count: n, Sent: at(sent), Answered: at(sent + 0.01),
			Status: 200, Outcome: outOK, Runs: runs}
	}
	rollback := &fault{Lane: "store", Kind: redisRollback, Started: at(1.5), Healed: at(2)}
	faults := []*fault{rollback, {Lane: "node", Kind: nodePause, Started: at(10), Healed: at(11)}}

	t.Run("clean", func(t *testing.T) {
		ops := []op{ok(1, 0, "", false, iv{1, 3}), ok(2, 1, "k1", false, iv{4, 4}), ok(3, 2, "k1", true, iv{4, 4})}
		states := []poolState{queuedState(p, 5)}
		for _, q := range testPools[1:] {
			states = append(states, queuedState(&q, 0))
		}
		v := check(ops, states, faults)
		if fails := v.failures(); len(fails) > 0 {
			t.Errorf("a clean history fails: %v", fails)
		}
		if v.Issued != 4 || v.Deliveries != 2 || v.Replays != 1 {
			t.Errorf("issued %d in %d deliveries with %d replays, want 4 in 2 with 1", v.Issued, v.Deliveries, v.Replays)
		}
	})

	t.Run("violations", func(t *testing.T) {
		ops := []op{
			ok(1, 0, "", false, iv{1, 3}),
			ok(2, 0.5, "k1", false, iv{4, 4}),
			ok(3, 3, "k1", true, iv{4, 4}),
			ok(4, 1, "k2", false, iv{5, 6}),
			ok(5, 3, "k2", true, iv{7, 7}),  // a replay that differed
			ok(6, 2.5, "", false, iv{6, 6}), // 6 again, after the rollback
			ok(7, 4, "", false, iv{5_001, 5_001}),
			{ID: 8, Pool: p.name, Count: 2, Sent: at(5), Answered: at(8), Outcome: outBrokeOff, Err: "deadline"},
			ok(9, 6, "", false, iv{20, 20}), // above the cursor
			{ID: 10, Pool: p.name, Count: 1, Sent: at(6), Answered: at(6), Status: 500, Code: "internal", Outcome: outUnexpected},
			// The key's new answer again: a replay that differs, no new delivery.
			ok(11, 12, "k2", true, iv{7, 7}),
		}
		// 8..9 a recovery gap and 3 an abandoned one: 10..12 unaccounted, one
		// more than the broken-off call asked for.
		states := []poolState{queuedState(p, 13,
			harness.Gap{Start: p.number(8), End: p.number(9), Reason: "recovery"},
			harness.Gap{Start: p.number(3), End: p.number(3), Reason: "abandoned"})}
		for _, q := range testPools[1:] {
			states = append(states, queuedState(&q, 0))
		}
		v := check(ops, states, faults)
		for _, c := range []struct {
			what      string
			got, want int64
		}{
			{"duplicates", v.Duplicates, 1},
			{"outside", v.Outside, 1},
			{"unaccounted", v.Unaccounted[p.name], 3},
			{"in doubt", v.InDoubt[p.name], 2},
			// 10..12 were taken between op 5's sending and op 9's answer,
			// while only op 8 (2 numbers) was in flight.
			{"unexplained", v.Unexplained, 1},
			{"above the cursor", v.AboveCursor, 1},
			{"in an abandoned gap", v.InAbandoned, 1},
			{"replays", int64(v.Replays), 3},
			{"replays that differed", int64(v.ReplaysDiffered), 2},
			{"unexpected answers", int64(v.Unexpected["500 internal"]), 1},
			{"issued", v.Issued, 9},
			{"duplicates blamed on the rollback", v.ByKind[checkDuplicates][redisRollback], 1},
			{"keys blamed on the rollback", v.ByKind[checkReplays][redisRollback], 1},
			{"keys blamed on the pause", v.ByKind[checkReplays][nodePause], 0},
		} {
			if c.got != c.want {
				t.Errorf("%s: %d, want %d", c.what, c.got, c.want)
			}
		}
		fails := strings.Join(v.failures(), "\n")
		for _, want := range []string{checkDuplicates, checkOutside, checkUnaccounted, checkUnexplained, checkAbove, checkAbandoned, checkReplays, checkAnswers} {
			if !strings.Contains(fails, want) {
				t.Errorf("failures do not name %q:\n%s", want, fails)
			}
		}
	})
}
