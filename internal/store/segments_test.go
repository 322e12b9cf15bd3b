package store_test

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/store"
)

func TestAddSegmentOverlapRules(t *testing.T) {
	forEachPool(t, 20, func(ctx context.Context, t *testing.T, s *store.Store) {
		first := mustSegment(t, s, "p", "24442000000000000100", "24442000000000000200")
		if first.ReservedHi != first.Range.Lo-1 || first.Next != first.Range.Lo || first.State != numberd.SegmentOpen {
			t.Errorf("new segment = %+v", first)
		}
		again, created, err := s.AddSegment(ctx, "p", numberd.NewSegment{Range: first.Range, Source: numberd.SourceManual, Ref: "other"})
		if err != nil || created || again.ID != first.ID || again.Ref != "" {
			t.Errorf("identical segment: id %d created %v ref %q, %v; want id %d unchanged", again.ID, created, again.Ref, err, first.ID)
		}
		overlapping := [][2]string{
			{"24442000000000000150", "24442000000000000160"},
			{"24442000000000000001", "24442000000000000100"},
			{"24442000000000000200", "24442000000000000300"},
			{"24442000000000000001", "24442000000000000999"},
			{"24442000000000000100", "24442000000000000199"},
		}
		for _, o := range overlapping {
			if _, _, err := s.AddSegment(ctx, "p", numberd.NewSegment{Range: mustRange(t, o[0], o[1]), Source: numberd.SourceManual}); !errors.Is(err, numberd.ErrOverlap) {
				t.Errorf("AddSegment(%s..%s) err = %v, want ErrOverlap", o[0], o[1], err)
			}
		}
		mustSegment(t, s, "p", "24442000000000000201", "24442000000000000300")
		mustSegment(t, s, "p", "24442000000000000001", "24442000000000000099")
		mustSegment(t, s, "p", "25442000000000000100", "25442000000000000200")

		// A used-up or retired segment still blocks its numbers.
		if _, err := s.CloseSegment(ctx, first.ID, numberd.SegmentRetired, first.Range.Lo, nil); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.AddSegment(ctx, "p", numberd.NewSegment{Range: mustRange(t, "24442000000000000150", "24442000000000000150"), Source: numberd.SourceManual}); !errors.Is(err, numberd.ErrOverlap) {
			t.Errorf("overlap with a retired segment: err = %v, want ErrOverlap", err)
		}
		// Another pool may hold the same numbers: pools are independent sequences.
		mustPool(t, s, "q", 20)
		mustSegment(t, s, "q", "24442000000000000100", "24442000000000000200")

		if _, _, err := s.AddSegment(ctx, "p", numberd.NewSegment{Range: mustRange(t, "0001", "0002"), Source: numberd.SourceManual}); !errors.Is(err, numberd.ErrInvalid) {
			t.Errorf("width mismatch: err = %v, want ErrInvalid", err)
		}
		if _, _, err := s.AddSegment(ctx, "nope", numberd.NewSegment{Range: first.Range, Source: numberd.SourceManual}); !errors.Is(err, numberd.ErrPoolNotFound) {
			t.Errorf("unknown pool: err = %v, want ErrPoolNotFound", err)
		}
		segs, err := s.Segments(ctx, "p")
		if err != nil {
			t.Fatal(err)
		}
		if len(segs) != 4 || segs[0].ID != first.ID || segs[0].State != numberd.SegmentRetired {
			t.Errorf("Segments = %+v", segs)
		}
		for i := 1; i < len(segs); i++ {
			if segs[i].ID <= segs[i-1].ID {
				t.Errorf("segments not in load order: %d after %d", segs[i].ID, segs[i-1].ID)
			}
		}
	})
}

func TestAddSegmentConcurrentOverlapsAdmitOne(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *store.Store) {
		mustPool(t, s, "p", 8)
		const workers = 16
		var created, identical, overlaps atomic.Int32
		var wg sync.WaitGroup
		for i := range workers {
			wg.Go(func() {
				// Every range overlaps every other; half of them are the same range.
				start, end := "00000100", "00000200"
				if i%2 == 1 {
					start = "000001" + string(rune('0'+i/2%10)) + "0"
				}
				seg, ok, err := s.AddSegment(context.Background(), "p", numberd.NewSegment{Range: mustRange(t, start, end), Source: numberd.SourceManual})
				switch {
				case errors.Is(err, numberd.ErrOverlap):
					overlaps.Add(1)
				case err != nil:
					t.Error(err)
				case ok:
					created.Add(1)
				case seg.Range.Start() == start:
					identical.Add(1)
				}
			})
		}
		wg.Wait()
		segs, err := s.Segments(context.Background(), "p")
		if err != nil {
			t.Fatal(err)
		}
		if created.Load() != 1 || len(segs) != 1 {
			t.Fatalf("created %d segments (%d stored), want exactly 1", created.Load(), len(segs))
		}
		if got := created.Load() + identical.Load() + overlaps.Load(); got != workers {
			t.Errorf("accounted for %d of %d loads", got, workers)
		}
	})
}

func TestReserveIsCompareAndSet(t *testing.T) {
	forEachPool(t, 6, func(ctx context.Context, t *testing.T, s *store.Store) {
		a := mustSegment(t, s, "p", "000001", "001000")
		b := mustSegment(t, s, "p", "002001", "003000")
		must(t, s.Reserve(ctx, []store.Reservation{{SegmentID: a.ID, From: 0, To: 100}}, nil))
		// One stale reservation fails the whole call.
		err := s.Reserve(ctx, []store.Reservation{{SegmentID: b.ID, From: 2000, To: 2100}, {SegmentID: a.ID, From: 0, To: 200}}, nil)
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("stale reservation: err = %v, want ErrConflict", err)
		}
		got, err := s.Segment(ctx, "p", b.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.ReservedHi != 2000 {
			t.Errorf("segment b reserved_hi = %d after a failed call, want 2000", got.ReservedHi)
		}
		if err := s.Reserve(ctx, []store.Reservation{{SegmentID: a.ID, From: 100, To: 1001}}, nil); !errors.Is(err, store.ErrConflict) {
			t.Errorf("reservation past the segment's end: err = %v, want ErrConflict", err)
		}
		if err := s.Reserve(ctx, []store.Reservation{{SegmentID: a.ID, From: 100, To: 100}}, nil); !errors.Is(err, numberd.ErrInvalid) {
			t.Errorf("reservation that does not rise: err = %v, want ErrInvalid", err)
		}
		if _, err := s.Segment(ctx, "p", 999999); !errors.Is(err, numberd.ErrSegmentNotFound) {
			t.Errorf("Segment(999999) err = %v, want ErrSegmentNotFound", err)
		}
		if _, err := s.Segment(ctx, "other", a.ID); !errors.Is(err, numberd.ErrSegmentNotFound) {
			t.Errorf("segment of another pool: err = %v, want ErrSegmentNotFound", err)
		}
	})
}

func TestReserveRacersNeverShareARange(t *testing.T) {
	forEachPool(t, 6, func(ctx context.Context, t *testing.T, s *store.Store) {
		seg := mustSegment(t, s, "p", "000001", "999999")
		const workers, rounds, step = 8, 20, 10
		var won atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for range rounds {
					cur, err := s.Segment(ctx, "p", seg.ID)
					if err != nil {
						t.Error(err)
						return
					}
					err = s.Reserve(ctx, []store.Reservation{{SegmentID: seg.ID, From: cur.ReservedHi, To: cur.ReservedHi + step}}, nil)
					switch {
					case err == nil:
						won.Add(1)
					case !errors.Is(err, store.ErrConflict):
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		got, err := s.Segment(ctx, "p", seg.ID)
		if err != nil {
			t.Fatal(err)
		}
		if want := seg.ReservedHi + won.Load()*step; got.ReservedHi != want {
			t.Errorf("reserved_hi = %d after %d winning reservations, want %d", got.ReservedHi, won.Load(), want)
		}
	})
}

func TestCursors(t *testing.T) {
	forEachPool(t, 4, func(ctx context.Context, t *testing.T, s *store.Store) {
		a := mustSegment(t, s, "p", "0001", "0010")
		b := mustSegment(t, s, "p", "0011", "0020")
		must(t, s.Reserve(ctx, []store.Reservation{{SegmentID: a.ID, From: 0, To: 10}, {SegmentID: b.ID, From: 10, To: 15}}, nil))
		must(t, s.SaveCursors(ctx, []store.Cursor{{SegmentID: a.ID, Next: 11}, {SegmentID: b.ID, Next: 13}}))
		// A stale checkpoint never moves a cursor back.
		must(t, s.SaveCursors(ctx, []store.Cursor{{SegmentID: b.ID, Next: 12}}))
		segs, err := s.Segments(ctx, "p")
		if err != nil {
			t.Fatal(err)
		}
		if segs[0].State != numberd.SegmentExhausted || segs[0].Next != 11 || segs[0].ReservedHi != 10 {
			t.Errorf("used-up segment after SaveCursors = %+v", segs[0])
		}
		if segs[1].State != numberd.SegmentOpen || segs[1].Next != 13 || segs[1].ReservedHi != 15 {
			t.Errorf("open segment after SaveCursors = %+v", segs[1])
		}
		must(t, s.ReleaseReservations(ctx, []store.Cursor{{SegmentID: b.ID, Next: 14}}))
		got, err := s.Segment(ctx, "p", b.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Next != 14 || got.ReservedHi != 13 {
			t.Errorf("after ReleaseReservations next %d reserved_hi %d, want 14 and 13", got.Next, got.ReservedHi)
		}
	})
}

// TestOpenSegments: the open segments of the pools asked for, in one query, each
// with the generation its pool was at when read.
func TestOpenSegments(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		mustPool(t, s, "a", 4)
		mustPool(t, s, "b", 4)
		mustPool(t, s, "c", 4)
		a1 := mustSegment(t, s, "a", "0001", "0010")
		a2 := mustSegment(t, s, "a", "0011", "0020")
		b1 := mustSegment(t, s, "b", "0001", "0010")
		mustSegment(t, s, "c", "0001", "0010")
		if _, err := s.CloseSegment(ctx, a1.ID, numberd.SegmentRetired, a1.Range.Lo, nil); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := s.Generations().Reseed(ctx, "b", 0, 3, nil); err != nil {
			t.Fatal(err)
		}
		must(t, s.SaveCursors(ctx, []store.Cursor{{SegmentID: b1.ID, Next: 5}}))
		got, err := s.OpenSegments(ctx, []string{"a", "b", "nosuch"})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || len(got["a"]) != 1 || got["a"][0].ID != a2.ID || got["a"][0].Epoch != 0 {
			t.Errorf("OpenSegments: a = %+v, want its second segment only, at generation 0", got["a"])
		}
		if len(got["b"]) != 1 || got["b"][0].Next != 5 || got["b"][0].Epoch != 3 {
			t.Errorf("OpenSegments: b = %+v, want next 5 at generation 3", got["b"])
		}
	})
}

// The listing's reads: every pool's segments in one query, and the numbers each
// segment lost to recovery gaps (other gaps are not losses of a reseed).
func TestAllSegmentsAndRecoveredBySegment(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		mustPool(t, s, "b", 20)
		mustPool(t, s, "a", 20)
		b1 := mustSegment(t, s, "b", "24442000000000000001", "24442000000000001000")
		a1 := mustSegment(t, s, "a", "24443000000000000001", "24443000000000001000")
		b2 := mustSegment(t, s, "b", "24442000000000002001", "24442000000000003000")
		all, err := s.AllSegments(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 2 || len(all["a"]) != 1 || all["a"][0].ID != a1.ID || len(all["b"]) != 2 || all["b"][0].ID != b1.ID || all["b"][1].ID != b2.ID {
			t.Fatalf("AllSegments = %+v", all)
		}
		if all["b"][1].Range != b2.Range {
			t.Errorf("AllSegments: b's second range %s, want %s", all["b"][1].Range, b2.Range)
		}
		gap := func(seg numberd.Segment, lo, hi int64, reason string) {
			t.Helper()
			g := numberd.Gap{Pool: seg.Pool, SegmentID: seg.ID, Range: seg.Range, Reason: reason}
			g.Range.Lo, g.Range.Hi = seg.Range.Lo+lo, seg.Range.Lo+hi
			must(t, s.Gaps().Add(ctx, g))
		}
		gap(b1, 10, 49, numberd.GapRecovery)
		gap(b1, 100, 109, numberd.GapRecovery)
		gap(b1, 500, 999, numberd.GapRetired)
		gap(a1, 0, 4, numberd.GapRecovery)
		got, err := s.Gaps().RecoveredBySegment(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[int64]int64{b1.ID: 50, a1.ID: 5}; !reflect.DeepEqual(got, want) {
			t.Errorf("RecoveredBySegment = %v, want %v", got, want)
		}
	})
}
