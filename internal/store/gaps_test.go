package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/segment"
	"github.com/numberd/numberd/internal/store"
)

func TestCloseSegmentAndGaps(t *testing.T) {
	forEachPool(t, 20, func(ctx context.Context, t *testing.T, s *store.Store) {
		seg := mustSegment(t, s, "p", "24442000000000000001", "24442000000000001000")
		must(t, s.Reserve(ctx, []store.Reservation{{SegmentID: seg.ID, From: seg.ReservedHi, To: seg.Range.Lo + 50}}, nil))
		must(t, s.SaveCursors(ctx, []store.Cursor{{SegmentID: seg.ID, Next: seg.Range.Lo + 10}}))
		recovery := numberd.Gap{Pool: "p", SegmentID: seg.ID, Range: seg.Range, Reason: numberd.GapRecovery}
		recovery.Range.Lo, recovery.Range.Hi = seg.Range.Lo+10, seg.Range.Lo+50
		for range 2 { // recorded twice, kept once
			must(t, s.Gaps().Add(ctx, recovery))
		}
		retired := numberd.Gap{Pool: "p", SegmentID: seg.ID, Range: seg.Range, Reason: numberd.GapRetired}
		retired.Range.Lo = seg.Range.Lo + 51
		changed, err := s.CloseSegment(ctx, seg.ID, numberd.SegmentRetired, seg.Range.Lo+51, &retired)
		if err != nil || !changed {
			t.Fatalf("CloseSegment = %v, %v", changed, err)
		}
		changed, err = s.CloseSegment(ctx, seg.ID, numberd.SegmentExpired, seg.Range.Lo+51, &retired)
		if err != nil || changed {
			t.Fatalf("second CloseSegment = %v, %v; want false", changed, err)
		}
		gaps, err := s.Gaps().List(ctx, "p")
		if err != nil {
			t.Fatal(err)
		}
		if len(gaps) != 2 {
			t.Fatalf("Gaps = %+v, want 2", gaps)
		}
		if g := gaps[0]; g.Reason != numberd.GapRecovery || g.Range.Start() != "24442000000000000011" || g.Range.End() != "24442000000000000051" || g.Count() != 41 {
			t.Errorf("recovery gap = %s %s count %d", g.Reason, g.Range, g.Count())
		}
		if g := gaps[1]; g.Reason != numberd.GapRetired || g.Range.Start() != "24442000000000000052" || g.Range.End() != "24442000000000001000" {
			t.Errorf("retired gap = %s %s", g.Reason, g.Range)
		}
		got, err := s.Segment(ctx, "p", seg.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != numberd.SegmentRetired || got.Next != seg.Range.Lo+51 || got.ReservedHi != seg.Range.Lo+50 {
			t.Errorf("segment after close = %+v", got)
		}
		if err := s.Gaps().Add(ctx, numberd.Gap{Pool: "p", SegmentID: seg.ID, Range: segment.Range{Lo: 5, Hi: 4}, Reason: numberd.GapRecovery}); !errors.Is(err, numberd.ErrInvalid) {
			t.Errorf("empty gap: err = %v, want ErrInvalid", err)
		}
	})
}

// TestTrimRecovery: a recovery gap, recorded in pieces around an abandoned one,
// narrowed from below to where the replaced state stopped; again, to no effect.
func TestTrimRecovery(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		a, _ := mustAbandonedAhead(t, s, 40)
		_, _, gaps, err := s.Generations().Reseed(ctx, "p", 0, 0, nil)
		if err != nil || len(gaps) != 2 {
			t.Fatalf("Reseed gaps = %+v, %v; want 10..11 and 15..40", gaps, err)
		}
		trim := []store.Trim{{SegmentID: a.ID, Lo: 10, Hi: 40, From: 21}}
		for range 2 {
			must(t, s.Generations().TrimRecovery(ctx, "p", trim))
			if got, want := recordedGaps(t, s, "p"), []string{"12..14 abandoned", "21..40 recovery"}; !slices.Equal(got, want) {
				t.Errorf("gaps after the trim = %q, want %q", got, want)
			}
		}
	})
}

func TestReseedStartsAGenerationAboveTheMarks(t *testing.T) {
	forEachPool(t, 4, func(ctx context.Context, t *testing.T, s *store.Store) {
		a := mustSegment(t, s, "p", "0001", "0100")
		b := mustSegment(t, s, "p", "0201", "0300")
		c := mustSegment(t, s, "p", "0401", "0500")
		must(t, s.Generations().ReserveAt(ctx, "p", 0, []store.Reservation{{SegmentID: a.ID, From: 0, To: 100}, {SegmentID: b.ID, From: 200, To: 250}}, nil))
		must(t, s.SaveCursors(ctx, []store.Cursor{{SegmentID: a.ID, Next: 90}, {SegmentID: b.ID, Next: 211}}))
		epoch, segs, gaps, err := s.Generations().Reseed(ctx, "p", 0, 0, nil)
		if err != nil || epoch != 1 {
			t.Fatalf("Reseed = %d, %v", epoch, err)
		}
		if len(gaps) != 2 || gaps[0].Range.Lo != 90 || gaps[0].Range.Hi != 100 || gaps[1].Range.Lo != 211 || gaps[1].Range.Hi != 250 {
			t.Errorf("gaps = %+v, want 90..100 and 211..250", gaps)
		}
		if len(segs) != 3 || segs[0].State != numberd.SegmentExhausted || segs[1].Next != 251 || segs[2].Next != c.Range.Lo {
			t.Errorf("segments after reseed = %+v", segs)
		}
		if _, _, _, err := s.Generations().Reseed(ctx, "p", 0, 0, nil); !errors.Is(err, store.ErrConflict) {
			t.Errorf("reseed from a stale generation: err = %v, want ErrConflict", err)
		}
		if err := s.Generations().ReserveAt(ctx, "p", 0, []store.Reservation{{SegmentID: b.ID, From: 250, To: 260}}, nil); !errors.Is(err, store.ErrConflict) {
			t.Errorf("reservation under a stale generation: err = %v, want ErrConflict", err)
		}
		if err := s.Generations().ReserveAt(ctx, "p", 1, []store.Reservation{{SegmentID: b.ID, From: 250, To: 260}}, []store.Cursor{{SegmentID: b.ID, Next: 255}}); err != nil {
			t.Errorf("reservation under the current generation: %v", err)
		}
		// Reseeding again records only what the new generation reserved.
		_, _, gaps, err = s.Generations().Reseed(ctx, "p", 1, 0, nil)
		if err != nil || len(gaps) != 1 || gaps[0].Range.Lo != 255 || gaps[0].Range.Hi != 260 {
			t.Errorf("second reseed gaps = %+v, %v; want 255..260 (from the cursor checkpointed with the reservation)", gaps, err)
		}
		all, err := s.Gaps().List(ctx, "p")
		if err != nil || len(all) != 3 {
			t.Errorf("stored gaps = %+v, %v; want 3", all, err)
		}
		p, err := s.Pool(ctx, "p")
		if err != nil || p.Epoch != 2 {
			t.Errorf("pool epoch = %d, %v; want 2", p.Epoch, err)
		}
	})
}

// TestReseedResumesAboveEveryMark: a store restored from a backup has marks below
// what Redis handed out; a reseed given those numbers as floors resumes above
// them, raises the mark, takes the generation it is told to at least, and
// leaves out of its gap what an earlier gap holds.
func TestReseedResumesAboveEveryMark(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		a, abandoned := mustAbandonedAhead(t, s, 20)
		epoch, segs, gaps, err := s.Generations().Reseed(ctx, "p", 0, 7, map[int64]int64{a.ID: 41})
		if err != nil || epoch != 7 {
			t.Fatalf("Reseed = %d, %v; want generation 7", epoch, err)
		}
		var got []string
		for _, g := range gaps {
			got = append(got, fmt.Sprintf("%d..%d %s", g.Range.Lo, g.Range.Hi, g.Reason))
		}
		if want := []string{"10..11 recovery", "15..40 recovery"}; !slices.Equal(got, want) {
			t.Errorf("gaps = %q, want %q (around the abandoned 12..14)", got, want)
		}
		if segs[0].Next != 41 || segs[0].ReservedHi != 40 {
			t.Errorf("segment after reseed: next %d, reserved_hi %d; want 41 and 40", segs[0].Next, segs[0].ReservedHi)
		}
		// A recovery gap of another kind is not an abandoned one: it stays
		// as it is, and only the numbers outside every gap are recorded.
		retired := abandoned
		retired.Reason, retired.Range.Lo, retired.Range.Hi = numberd.GapRetired, 10, 45
		if got, err := s.Gaps().AddOutside(ctx, retired); err != nil || len(got) != 1 || got[0].Range.Lo != 41 || got[0].Range.Hi != 45 {
			t.Errorf("AddOutside over recorded gaps = %+v, %v; want 41..45 only", got, err)
		}
	})
}

// TestAbandonedInsideRecoveryOutlivesTheTrim: a call lost on the state a reseed
// replaced is settled after the reseed recorded its wide recovery gap and before
// the trim. Its numbers must stay in a gap once the trim drops what the replaced
// state took, and be recorded once only however often the abandon is retried.
func TestAbandonedInsideRecoveryOutlivesTheTrim(t *testing.T) {
	forEachPool(t, 4, func(ctx context.Context, t *testing.T, s *store.Store) {
		a := mustSegment(t, s, "p", "0001", "0100")
		must(t, s.Generations().ReserveAt(ctx, "p", 0, []store.Reservation{{SegmentID: a.ID, From: 0, To: 40}}, []store.Cursor{{SegmentID: a.ID, Next: 10}}))
		if _, _, gaps, err := s.Generations().Reseed(ctx, "p", 0, 0, nil); err != nil || len(gaps) != 1 {
			t.Fatalf("Reseed gaps = %+v, %v; want 10..40", gaps, err)
		}
		lost := numberd.Gap{Pool: "p", SegmentID: a.ID, Range: a.Range, Reason: numberd.GapAbandoned}
		lost.Range.Lo, lost.Range.Hi = 14, 16
		for try := range 2 {
			got, err := s.Gaps().AddOutside(ctx, lost)
			if err != nil {
				t.Fatal(err)
			}
			if want := 1 - try; len(got) != want {
				t.Errorf("abandon %d recorded %+v, want %d piece(s)", try+1, got, want)
			}
		}
		must(t, s.Generations().TrimRecovery(ctx, "p", []store.Trim{{SegmentID: a.ID, Lo: 10, Hi: 40, From: 21}}))
		if got, want := recordedGaps(t, s, "p"), []string{"14..16 abandoned", "21..40 recovery"}; !slices.Equal(got, want) {
			t.Errorf("gaps after abandon and trim = %q, want %q", got, want)
		}
	})
}

// TestLeftMemoRecoveryOutlivesTheTrim: the numbers of a call whose memo was
// left in place are recorded as a recovery gap, before a reseed's wide gap or
// inside it; the reseed's trim, which drops what the replaced state took,
// leaves that gap whole.
func TestLeftMemoRecoveryOutlivesTheTrim(t *testing.T) {
	for _, first := range []string{"memo", "reseed"} {
		t.Run(first+" first", func(t *testing.T) {
			forEachPool(t, 4, func(ctx context.Context, t *testing.T, s *store.Store) {
				a := mustSegment(t, s, "p", "0001", "0100")
				must(t, s.Generations().ReserveAt(ctx, "p", 0, []store.Reservation{{SegmentID: a.ID, From: 0, To: 40}}, []store.Cursor{{SegmentID: a.ID, Next: 10}}))
				left := numberd.Gap{Pool: "p", SegmentID: a.ID, Range: a.Range, Reason: numberd.GapRecovery}
				left.Range.Lo, left.Range.Hi = 14, 16
				record := func() {
					if got, err := s.Gaps().AddOutside(ctx, left); err != nil || len(got) != 1 {
						t.Fatalf("recording the left memo's numbers = %+v, %v; want 14..16", got, err)
					}
				}
				if first == "memo" {
					record()
				}
				if _, _, _, err := s.Generations().Reseed(ctx, "p", 0, 0, nil); err != nil {
					t.Fatal(err)
				}
				if first == "reseed" {
					record()
				}
				must(t, s.Generations().TrimRecovery(ctx, "p", []store.Trim{{SegmentID: a.ID, Lo: 10, Hi: 40, From: 21}}))
				if got, want := recordedGaps(t, s, "p"), []string{"14..16 recovery", "21..40 recovery"}; !slices.Equal(got, want) {
					t.Errorf("gaps after the trim = %q, want %q", got, want)
				}
			})
		})
	}
}

// TestReseedGapCoversWhatTheCheckpointHeld: a checkpoint's Held (numbers below
// its cursor that memos in place tell of) moves the reseed's recovery gap down
// by as much; it goes with the cursor it was seen below, so a checkpoint that
// does not move the cursor on leaves it to a newer one, and an exhausted
// segment's held numbers get a gap too.
func TestReseedGapCoversWhatTheCheckpointHeld(t *testing.T) {
	for _, tc := range []struct {
		name string
		cs   [][]store.Cursor // checkpoints, in order
		want []string
	}{
		{"held", [][]store.Cursor{{{Next: 30, Held: 5}}}, []string{"25..40 recovery"}},
		{"an older checkpoint after", [][]store.Cursor{{{Next: 30, Held: 5}}, {{Next: 20}}}, []string{"25..40 recovery"}},
		{"settled since", [][]store.Cursor{{{Next: 30, Held: 5}}, {{Next: 30}}}, []string{"30..40 recovery"}},
		{"two in one batch", [][]store.Cursor{{{Next: 30}, {Next: 32, Held: 4}}}, []string{"28..40 recovery"}},
		{"exhausted", [][]store.Cursor{{{Next: 101, Held: 3}}}, []string{"98..100 recovery"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachPool(t, 4, func(ctx context.Context, t *testing.T, s *store.Store) {
				a := mustSegment(t, s, "p", "0001", "0100")
				must(t, s.Generations().ReserveAt(ctx, "p", 0, []store.Reservation{{SegmentID: a.ID, From: 0, To: 40}}, nil))
				for _, cs := range tc.cs {
					for i := range cs {
						cs[i].SegmentID = a.ID
					}
					must(t, s.SaveCursors(ctx, cs))
				}
				if _, _, _, err := s.Generations().Reseed(ctx, "p", 0, 0, nil); err != nil {
					t.Fatal(err)
				}
				if got := recordedGaps(t, s, "p"); !slices.Equal(got, tc.want) {
					t.Errorf("gaps after the reseed = %q, want %q", got, tc.want)
				}
			})
		})
	}
}

func TestCloseSegmentAtRefusesAStaleGeneration(t *testing.T) {
	forEachPool(t, 4, func(ctx context.Context, t *testing.T, s *store.Store) {
		seg := mustSegment(t, s, "p", "0001", "0100")
		gapFrom := func(lo int64) *numberd.Gap {
			g := numberd.Gap{Pool: "p", SegmentID: seg.ID, Range: seg.Range, Reason: numberd.GapRetired}
			g.Range.Lo = lo
			return &g
		}
		if _, _, _, err := s.Generations().Reseed(ctx, "p", 0, 0, nil); err != nil {
			t.Fatal(err)
		}
		changed, err := s.Generations().CloseSegmentAt(ctx, "p", 0, seg.ID, numberd.SegmentRetired, 11, gapFrom(11))
		if changed || !errors.Is(err, store.ErrConflict) {
			t.Fatalf("close under a stale generation = %v, %v; want ErrConflict", changed, err)
		}
		if got, err := s.Segment(ctx, "p", seg.ID); err != nil || got.State != numberd.SegmentOpen {
			t.Fatalf("after the refused close: %+v, %v; want open", got, err)
		}
		if gaps, err := s.Gaps().List(ctx, "p"); err != nil || len(gaps) != 0 {
			t.Fatalf("gaps after the refused close = %+v, %v; want none", gaps, err)
		}
		changed, err = s.Generations().CloseSegmentAt(ctx, "p", 1, seg.ID, numberd.SegmentRetired, 21, gapFrom(21))
		if !changed || err != nil {
			t.Fatalf("close under the current generation = %v, %v", changed, err)
		}
		if got, err := s.Segment(ctx, "p", seg.ID); err != nil || got.State != numberd.SegmentRetired || got.Next != 21 {
			t.Errorf("after the close: %+v, %v; want retired at 21", got, err)
		}
		if gaps, err := s.Gaps().List(ctx, "p"); err != nil || len(gaps) != 1 || gaps[0].Range.Lo != 21 || gaps[0].Range.Hi != 100 {
			t.Errorf("gaps after the close = %+v, %v; want 21..100", gaps, err)
		}
		if _, err := s.Generations().CloseSegmentAt(ctx, "nope", 0, seg.ID, numberd.SegmentRetired, 21, nil); !errors.Is(err, numberd.ErrPoolNotFound) {
			t.Errorf("close in an unknown pool: err = %v, want ErrPoolNotFound", err)
		}
	})
}
