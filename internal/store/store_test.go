package store_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/segment"
	"github.com/numberd/numberd/internal/store"
	"github.com/numberd/numberd/internal/testenv"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// backends opens a fresh, empty store of each kind.
var backends = []struct {
	name string
	open func(tb testing.TB) *store.Store
}{
	{"sqlite", func(tb testing.TB) *store.Store {
		s, err := store.OpenSQLite(context.Background(), tb.TempDir(), quiet)
		if err != nil {
			tb.Fatal(err)
		}
		return s
	}},
	{"mysql", func(tb testing.TB) *store.Store {
		s, err := store.OpenMySQL(context.Background(), testenv.MySQLDSN(tb), quiet)
		if err != nil {
			tb.Fatal(err)
		}
		return s
	}},
}

// forEachStore runs test against a fresh store of every kind: one suite, both databases.
func forEachStore(t *testing.T, test func(t *testing.T, s *store.Store)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			s := b.open(t)
			t.Cleanup(func() { _ = s.Close() })
			test(t, s)
		})
	}
}

func ptr[T any](v T) *T { return &v }

func mustRange(tb testing.TB, start, end string) segment.Range {
	tb.Helper()
	r, err := segment.ParseRange(start, end, len(start))
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

func mustPool(tb testing.TB, s *store.Store, id string, digits int) {
	tb.Helper()
	if _, _, err := s.PutPool(context.Background(), id, numberd.PoolUpdate{Digits: &digits}); err != nil {
		tb.Fatal(err)
	}
}

func mustSegment(tb testing.TB, s *store.Store, pool, start, end string) numberd.Segment {
	tb.Helper()
	seg, created, err := s.AddSegment(context.Background(), pool, numberd.NewSegment{Range: mustRange(tb, start, end), Source: numberd.SourceManual})
	if err != nil || !created {
		tb.Fatalf("AddSegment(%s..%s) = created %v, %v", start, end, created, err)
	}
	return seg
}

func TestPools(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		if _, _, err := s.PutPool(ctx, "p", numberd.PoolUpdate{}); !errors.Is(err, numberd.ErrInvalid) {
			t.Fatalf("create without digits: err = %v, want ErrInvalid", err)
		}
		p, created, err := s.PutPool(ctx, "p", numberd.PoolUpdate{Digits: ptr(20), Upstream: ptr("leqi")})
		if err != nil || !created {
			t.Fatalf("create: created %v, %v", created, err)
		}
		if p.Digits != 20 || p.RefillThreshold != numberd.DefaultRefillThreshold || p.Upstream != "leqi" || p.RefillQuantity != 0 {
			t.Errorf("created pool = %+v", p)
		}
		p, created, err = s.PutPool(ctx, "p", numberd.PoolUpdate{RefillThreshold: ptr(int64(7)), RefillQuantity: ptr(int64(500))})
		if err != nil || created {
			t.Fatalf("update: created %v, %v", created, err)
		}
		if p.Digits != 20 || p.RefillThreshold != 7 || p.Upstream != "leqi" || p.RefillQuantity != 500 {
			t.Errorf("updated pool = %+v", p)
		}
		if _, _, err := s.PutPool(ctx, "p", numberd.PoolUpdate{Digits: ptr(12)}); !errors.Is(err, numberd.ErrInvalid) {
			t.Errorf("changing digits: err = %v, want ErrInvalid", err)
		}
		if _, _, err := s.PutPool(ctx, "p", numberd.PoolUpdate{Digits: ptr(20), Upstream: ptr("")}); err != nil {
			t.Errorf("same digits again: %v", err)
		}
		got, err := s.Pool(ctx, "p")
		if err != nil {
			t.Fatal(err)
		}
		if got.Upstream != "" || got.RefillThreshold != 7 || got.Digits != 20 {
			t.Errorf("Pool = %+v", got)
		}
		if _, err := s.Pool(ctx, "nope"); !errors.Is(err, numberd.ErrPoolNotFound) {
			t.Errorf("Pool(nope) err = %v, want ErrPoolNotFound", err)
		}
		mustPool(t, s, "a", 4)
		pools, err := s.Pools(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(pools) != 2 || pools[0].ID != "a" || pools[1].ID != "p" {
			t.Errorf("Pools = %+v, want a, p", pools)
		}
	})
}

func TestAddSegmentOverlapRules(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		mustPool(t, s, "p", 20)
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
	forEachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		mustPool(t, s, "p", 6)
		a := mustSegment(t, s, "p", "000001", "001000")
		b := mustSegment(t, s, "p", "002001", "003000")
		if err := s.Reserve(ctx, []store.Reservation{{SegmentID: a.ID, From: 0, To: 100}}, nil); err != nil {
			t.Fatal(err)
		}
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
	forEachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		mustPool(t, s, "p", 6)
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

func TestCloseSegmentAndGaps(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		mustPool(t, s, "p", 20)
		seg := mustSegment(t, s, "p", "24442000000000000001", "24442000000000001000")
		if err := s.Reserve(ctx, []store.Reservation{{SegmentID: seg.ID, From: seg.ReservedHi, To: seg.Range.Lo + 50}}, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveCursors(ctx, []store.Cursor{{SegmentID: seg.ID, Next: seg.Range.Lo + 10}}); err != nil {
			t.Fatal(err)
		}
		recovery := numberd.Gap{Pool: "p", SegmentID: seg.ID, Range: seg.Range, Reason: numberd.GapRecovery}
		recovery.Range.Lo, recovery.Range.Hi = seg.Range.Lo+10, seg.Range.Lo+50
		for range 2 { // recorded twice, kept once
			if err := s.AddGap(ctx, recovery); err != nil {
				t.Fatal(err)
			}
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
		gaps, err := s.Gaps(ctx, "p")
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
		if err := s.AddGap(ctx, numberd.Gap{Pool: "p", SegmentID: seg.ID, Range: segment.Range{Lo: 5, Hi: 4}, Reason: numberd.GapRecovery}); !errors.Is(err, numberd.ErrInvalid) {
			t.Errorf("empty gap: err = %v, want ErrInvalid", err)
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
			if err := s.AddGap(ctx, g); err != nil {
				t.Fatal(err)
			}
		}
		gap(b1, 10, 49, numberd.GapRecovery)
		gap(b1, 100, 109, numberd.GapRecovery)
		gap(b1, 500, 999, numberd.GapRetired)
		gap(a1, 0, 4, numberd.GapRecovery)
		got, err := s.RecoveredBySegment(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[int64]int64{b1.ID: 50, a1.ID: 5}; !reflect.DeepEqual(got, want) {
			t.Errorf("RecoveredBySegment = %v, want %v", got, want)
		}
	})
}

func TestCursors(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		mustPool(t, s, "p", 4)
		a := mustSegment(t, s, "p", "0001", "0010")
		b := mustSegment(t, s, "p", "0011", "0020")
		if err := s.Reserve(ctx, []store.Reservation{{SegmentID: a.ID, From: 0, To: 10}, {SegmentID: b.ID, From: 10, To: 15}}, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveCursors(ctx, []store.Cursor{{SegmentID: a.ID, Next: 11}, {SegmentID: b.ID, Next: 13}}); err != nil {
			t.Fatal(err)
		}
		// A stale checkpoint never moves a cursor back.
		if err := s.SaveCursors(ctx, []store.Cursor{{SegmentID: b.ID, Next: 12}}); err != nil {
			t.Fatal(err)
		}
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
		if err := s.ReleaseReservations(ctx, []store.Cursor{{SegmentID: b.ID, Next: 14}}); err != nil {
			t.Fatal(err)
		}
		got, err := s.Segment(ctx, "p", b.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Next != 14 || got.ReservedHi != 13 {
			t.Errorf("after ReleaseReservations next %d reserved_hi %d, want 14 and 13", got.Next, got.ReservedHi)
		}
	})
}

// mustAbandonedAhead makes pool p with segment 0001..0100, reserved up to hi,
// its cursor checkpointed at 10, and 12..14 an abandoned gap, which it returns.
func mustAbandonedAhead(tb testing.TB, s *store.Store, hi int64) (numberd.Segment, numberd.Gap) {
	tb.Helper()
	ctx := context.Background()
	mustPool(tb, s, "p", 4)
	a := mustSegment(tb, s, "p", "0001", "0100")
	if err := s.ReserveAt(ctx, "p", 0, []store.Reservation{{SegmentID: a.ID, From: 0, To: hi}}, []store.Cursor{{SegmentID: a.ID, Next: 10}}); err != nil {
		tb.Fatal(err)
	}
	abandoned := numberd.Gap{Pool: "p", SegmentID: a.ID, Range: a.Range, Reason: numberd.GapAbandoned}
	abandoned.Range.Lo, abandoned.Range.Hi = 12, 14
	if got, err := s.AddGapOutside(ctx, abandoned); err != nil || len(got) != 1 {
		tb.Fatalf("AddGapOutside = %+v, %v", got, err)
	}
	return a, abandoned
}

// recordedGaps describes pool's gaps as "lo..hi reason", in the order of lo.
func recordedGaps(tb testing.TB, s *store.Store, pool string) []string {
	tb.Helper()
	all, err := s.Gaps(context.Background(), pool)
	if err != nil {
		tb.Fatal(err)
	}
	slices.SortFunc(all, func(a, b numberd.Gap) int { return cmp.Compare(a.Range.Lo, b.Range.Lo) })
	got := make([]string, len(all))
	for i, g := range all {
		got[i] = fmt.Sprintf("%d..%d %s", g.Range.Lo, g.Range.Hi, g.Reason)
	}
	return got
}

// TestTrimRecovery: a recovery gap, recorded in pieces around an abandoned one,
// narrowed from below to where the replaced state stopped; again, to no effect.
func TestTrimRecovery(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		a, _ := mustAbandonedAhead(t, s, 40)
		_, _, gaps, err := s.Reseed(ctx, "p", 0, 0, nil)
		if err != nil || len(gaps) != 2 {
			t.Fatalf("Reseed gaps = %+v, %v; want 10..11 and 15..40", gaps, err)
		}
		trim := []store.Trim{{SegmentID: a.ID, Lo: 10, Hi: 40, From: 21}}
		for range 2 {
			if err := s.TrimRecovery(ctx, "p", trim); err != nil {
				t.Fatal(err)
			}
			if got, want := recordedGaps(t, s, "p"), []string{"12..14 abandoned", "21..40 recovery"}; !slices.Equal(got, want) {
				t.Errorf("gaps after the trim = %q, want %q", got, want)
			}
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
		if _, _, _, err := s.Reseed(ctx, "b", 0, 3, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveCursors(ctx, []store.Cursor{{SegmentID: b1.ID, Next: 5}}); err != nil {
			t.Fatal(err)
		}
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

func TestIdempotencyRecords(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
		s.Now = func() time.Time { return now }
		rec := store.IdempotencyRecord{Pool: "p", Scope: "tok", Key: "k1", Fingerprint: "count=2", Answer: "a-b", CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
		if err := s.PutIdempotency(ctx, rec); err != nil {
			t.Fatal(err)
		}
		if err := s.PutIdempotency(ctx, rec); !errors.Is(err, store.ErrDuplicate) {
			t.Fatalf("second put: err = %v, want ErrDuplicate", err)
		}
		got, ok, err := s.Idempotency(ctx, "p", "tok", "k1")
		if err != nil || !ok || got.Answer != "a-b" || got.Fingerprint != "count=2" || !got.ExpiresAt.Equal(rec.ExpiresAt) {
			t.Fatalf("Idempotency = %+v %v %v", got, ok, err)
		}
		for _, other := range [][3]string{{"q", "tok", "k1"}, {"p", "tok2", "k1"}, {"p", "tok", "k2"}} {
			if _, ok, err := s.Idempotency(ctx, other[0], other[1], other[2]); ok || err != nil {
				t.Errorf("Idempotency%v = found %v, %v; keys are scoped to pool and caller", other, ok, err)
			}
		}
		now = now.Add(25 * time.Hour)
		if _, ok, _ := s.Idempotency(ctx, "p", "tok", "k1"); ok {
			t.Error("an expired record is still answered")
		}
		rec.Answer, rec.ExpiresAt = "c-d", now.Add(24*time.Hour)
		if err := s.PutIdempotency(ctx, rec); err != nil {
			t.Fatalf("put over an expired record: %v", err)
		}
		old := store.IdempotencyRecord{Pool: "p", Scope: "tok", Key: "old", Fingerprint: "count=1", Answer: "x", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := s.PutIdempotency(ctx, old); err != nil {
			t.Fatal(err)
		}
		now = now.Add(2 * time.Hour)
		n, err := s.PurgeIdempotency(ctx)
		if err != nil || n != 1 {
			t.Errorf("PurgeIdempotency = %d, %v; want 1", n, err)
		}
		if got, ok, _ := s.Idempotency(ctx, "p", "tok", "k1"); !ok || got.Answer != "c-d" {
			t.Errorf("live record after purge = %+v %v", got, ok)
		}
	})
}

func TestClosedStoreIsUnavailable(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			s := b.open(t)
			if err := s.Ping(context.Background()); err != nil {
				t.Fatal(err)
			}
			_ = s.Close()
			if err := s.Ping(context.Background()); !errors.Is(err, numberd.ErrUnavailable) {
				t.Errorf("Ping on a closed store: err = %v, want ErrUnavailable", err)
			}
			if _, err := s.Pools(context.Background()); !errors.Is(err, numberd.ErrUnavailable) {
				t.Errorf("Pools on a closed store: err = %v, want ErrUnavailable", err)
			}
		})
	}
}

func TestSQLiteDataDirectoryHasOneWriter(t *testing.T) {
	dir := t.TempDir()
	s, err := store.OpenSQLite(context.Background(), dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.OpenSQLite(context.Background(), dir, quiet); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second open: err = %v, want ErrLocked", err)
	}
	mustPool(t, s, "p", 4)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = store.OpenSQLite(context.Background(), dir, quiet)
	if err != nil {
		t.Fatalf("reopen after close: %v", err)
	}
	defer s.Close()
	if _, err := s.Pool(context.Background(), "p"); err != nil {
		t.Errorf("pool lost across reopen: %v", err)
	}
}

func TestMySQLNodesMigrateTogether(t *testing.T) {
	dsn := testenv.MySQLDSN(t)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			s, err := store.OpenMySQL(context.Background(), dsn, quiet)
			if err != nil {
				t.Error(err)
				return
			}
			mustPool(t, s, "p", 4)
			_ = s.Close()
		})
	}
	wg.Wait()
}

func TestOpenMySQLRejectsBadDSNWithoutEchoingIt(t *testing.T) {
	for _, dsn := range []string{"root:s3cret@tcp(127.0.0.1:1", "root:s3cret@tcp(127.0.0.1:3306)/"} {
		_, err := store.OpenMySQL(context.Background(), dsn, quiet)
		if !errors.Is(err, numberd.ErrInvalid) {
			t.Errorf("OpenMySQL(bad dsn) err = %v, want ErrInvalid", err)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error %q shows the password", err)
		}
	}
}

func TestReseedStartsAGenerationAboveTheMarks(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		mustPool(t, s, "p", 4)
		a := mustSegment(t, s, "p", "0001", "0100")
		b := mustSegment(t, s, "p", "0201", "0300")
		c := mustSegment(t, s, "p", "0401", "0500")
		if err := s.ReserveAt(ctx, "p", 0, []store.Reservation{{SegmentID: a.ID, From: 0, To: 100}, {SegmentID: b.ID, From: 200, To: 250}}, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveCursors(ctx, []store.Cursor{{SegmentID: a.ID, Next: 90}, {SegmentID: b.ID, Next: 211}}); err != nil {
			t.Fatal(err)
		}
		epoch, segs, gaps, err := s.Reseed(ctx, "p", 0, 0, nil)
		if err != nil || epoch != 1 {
			t.Fatalf("Reseed = %d, %v", epoch, err)
		}
		if len(gaps) != 2 || gaps[0].Range.Lo != 90 || gaps[0].Range.Hi != 100 || gaps[1].Range.Lo != 211 || gaps[1].Range.Hi != 250 {
			t.Errorf("gaps = %+v, want 90..100 and 211..250", gaps)
		}
		if len(segs) != 3 || segs[0].State != numberd.SegmentExhausted || segs[1].Next != 251 || segs[2].Next != c.Range.Lo {
			t.Errorf("segments after reseed = %+v", segs)
		}
		if _, _, _, err := s.Reseed(ctx, "p", 0, 0, nil); !errors.Is(err, store.ErrConflict) {
			t.Errorf("reseed from a stale generation: err = %v, want ErrConflict", err)
		}
		if err := s.ReserveAt(ctx, "p", 0, []store.Reservation{{SegmentID: b.ID, From: 250, To: 260}}, nil); !errors.Is(err, store.ErrConflict) {
			t.Errorf("reservation under a stale generation: err = %v, want ErrConflict", err)
		}
		if err := s.ReserveAt(ctx, "p", 1, []store.Reservation{{SegmentID: b.ID, From: 250, To: 260}}, []store.Cursor{{SegmentID: b.ID, Next: 255}}); err != nil {
			t.Errorf("reservation under the current generation: %v", err)
		}
		// Reseeding again records only what the new generation reserved.
		_, _, gaps, err = s.Reseed(ctx, "p", 1, 0, nil)
		if err != nil || len(gaps) != 1 || gaps[0].Range.Lo != 255 || gaps[0].Range.Hi != 260 {
			t.Errorf("second reseed gaps = %+v, %v; want 255..260 (from the cursor checkpointed with the reservation)", gaps, err)
		}
		all, err := s.Gaps(ctx, "p")
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
		epoch, segs, gaps, err := s.Reseed(ctx, "p", 0, 7, map[int64]int64{a.ID: 41})
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
		if got, err := s.AddGapOutside(ctx, retired); err != nil || len(got) != 1 || got[0].Range.Lo != 41 || got[0].Range.Hi != 45 {
			t.Errorf("AddGapOutside over recorded gaps = %+v, %v; want 41..45 only", got, err)
		}
	})
}

// TestAbandonedInsideRecoveryOutlivesTheTrim: a call lost on the state a reseed
// replaced is settled after the reseed recorded its wide recovery gap and before
// the trim. Its numbers must stay in a gap once the trim drops what the replaced
// state took, and be recorded once only however often the abandon is retried.
func TestAbandonedInsideRecoveryOutlivesTheTrim(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		mustPool(t, s, "p", 4)
		a := mustSegment(t, s, "p", "0001", "0100")
		if err := s.ReserveAt(ctx, "p", 0, []store.Reservation{{SegmentID: a.ID, From: 0, To: 40}}, []store.Cursor{{SegmentID: a.ID, Next: 10}}); err != nil {
			t.Fatal(err)
		}
		if _, _, gaps, err := s.Reseed(ctx, "p", 0, 0, nil); err != nil || len(gaps) != 1 {
			t.Fatalf("Reseed gaps = %+v, %v; want 10..40", gaps, err)
		}
		lost := numberd.Gap{Pool: "p", SegmentID: a.ID, Range: a.Range, Reason: numberd.GapAbandoned}
		lost.Range.Lo, lost.Range.Hi = 14, 16
		for try := range 2 {
			got, err := s.AddGapOutside(ctx, lost)
			if err != nil {
				t.Fatal(err)
			}
			if want := 1 - try; len(got) != want {
				t.Errorf("abandon %d recorded %+v, want %d piece(s)", try+1, got, want)
			}
		}
		if err := s.TrimRecovery(ctx, "p", []store.Trim{{SegmentID: a.ID, Lo: 10, Hi: 40, From: 21}}); err != nil {
			t.Fatal(err)
		}
		if got, want := recordedGaps(t, s, "p"), []string{"14..16 abandoned", "21..40 recovery"}; !slices.Equal(got, want) {
			t.Errorf("gaps after abandon and trim = %q, want %q", got, want)
		}
	})
}

// TestKeepIdempotenciesKeepsTheFirst: a batch of records stores those whose key
// is free and answers, for each, what its key holds.
func TestKeepIdempotenciesKeepsTheFirst(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		mustPool(t, s, "p", 4)
		now := time.Now()
		rec := func(key, answer string) store.IdempotencyRecord {
			return store.IdempotencyRecord{Pool: "p", Scope: "s", Key: key, Fingerprint: "count=1", Answer: answer, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		}
		if _, err := s.KeepIdempotencies(ctx, []store.IdempotencyRecord{rec("a", "first")}); err != nil {
			t.Fatal(err)
		}
		expired := rec("c", "old")
		expired.ExpiresAt = now.Add(-time.Second)
		if err := s.PutIdempotency(ctx, expired); err != nil {
			t.Fatal(err)
		}
		held, err := s.KeepIdempotencies(ctx, []store.IdempotencyRecord{rec("a", "second"), rec("b", "new"), rec("c", "fresh")})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, h := range held {
			got = append(got, h.Key+"="+h.Answer)
		}
		if want := []string{"a=first", "b=new", "c=fresh"}; !slices.Equal(got, want) {
			t.Errorf("held = %q, want %q", got, want)
		}
	})
}

// TestKeepIdempotenciesAbandoned: an abandoned record (empty answer) is kept
// only where the key has no record; a replayed record does not take its place,
// a fresh one does.
func TestKeepIdempotenciesAbandoned(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		mustPool(t, s, "p", 4)
		now := time.Now()
		rec := func(key, answer string, fresh bool) store.IdempotencyRecord {
			return store.IdempotencyRecord{Pool: "p", Scope: "s", Key: key, Fingerprint: "count=1", Answer: answer, CreatedAt: now, ExpiresAt: now.Add(time.Hour), Fresh: fresh}
		}
		keep := func(recs ...store.IdempotencyRecord) []string {
			t.Helper()
			held, err := s.KeepIdempotencies(ctx, recs)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, h := range held {
				out = append(out, h.Key+"="+h.Answer)
			}
			return out
		}
		if got, want := keep(rec("answered", "one", true), rec("abandoned", "", false)), []string{"answered=one", "abandoned="}; !slices.Equal(got, want) {
			t.Errorf("first records: %q, want %q", got, want)
		}
		if got, want := keep(rec("answered", "", false)), []string{"answered=one"}; !slices.Equal(got, want) {
			t.Errorf("abandoning an answered key: %q, want %q", got, want)
		}
		if got, want := keep(rec("abandoned", "stale", false)), []string{"abandoned="}; !slices.Equal(got, want) {
			t.Errorf("a replayed answer over an abandoned record: %q, want %q", got, want)
		}
		if got, want := keep(rec("abandoned", "two", true)), []string{"abandoned=two"}; !slices.Equal(got, want) {
			t.Errorf("a fresh answer over an abandoned record: %q, want %q", got, want)
		}
		if got, want := keep(rec("abandoned", "three", true)), []string{"abandoned=two"}; !slices.Equal(got, want) {
			t.Errorf("a fresh answer over an answered key: %q, want %q", got, want)
		}
	})
}

// TestFindIdempotenciesAnswersEachKey: one lookup of several keys finds the
// unexpired records and nothing for a missing or expired key, in the keys' order.
func TestFindIdempotenciesAnswersEachKey(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		mustPool(t, s, "p", 4)
		now := time.Now()
		rec := func(key, answer string, ttl time.Duration) store.IdempotencyRecord {
			return store.IdempotencyRecord{Pool: "p", Scope: "s", Key: key, Fingerprint: "count=1", Answer: answer, CreatedAt: now, ExpiresAt: now.Add(ttl)}
		}
		for _, r := range []store.IdempotencyRecord{rec("a", "one", time.Hour), rec("b", "two", time.Hour), rec("old", "gone", -time.Second)} {
			if err := s.PutIdempotency(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		other := rec("a", "", 0)
		other.Scope = "another caller"
		found, err := s.FindIdempotencies(ctx, []store.IdempotencyRecord{rec("b", "", 0), rec("missing", "", 0), rec("old", "", 0), other, rec("a", "", 0)})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, f := range found {
			got = append(got, f.Key+"="+f.Answer)
		}
		if want := []string{"b=two", "=", "=", "=", "a=one"}; !slices.Equal(got, want) {
			t.Errorf("found = %q, want %q", got, want)
		}
	})
}

func TestCloseSegmentAtRefusesAStaleGeneration(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		mustPool(t, s, "p", 4)
		seg := mustSegment(t, s, "p", "0001", "0100")
		gapFrom := func(lo int64) *numberd.Gap {
			g := numberd.Gap{Pool: "p", SegmentID: seg.ID, Range: seg.Range, Reason: numberd.GapRetired}
			g.Range.Lo = lo
			return &g
		}
		if _, _, _, err := s.Reseed(ctx, "p", 0, 0, nil); err != nil {
			t.Fatal(err)
		}
		changed, err := s.CloseSegmentAt(ctx, "p", 0, seg.ID, numberd.SegmentRetired, 11, gapFrom(11))
		if changed || !errors.Is(err, store.ErrConflict) {
			t.Fatalf("close under a stale generation = %v, %v; want ErrConflict", changed, err)
		}
		if got, err := s.Segment(ctx, "p", seg.ID); err != nil || got.State != numberd.SegmentOpen {
			t.Fatalf("after the refused close: %+v, %v; want open", got, err)
		}
		if gaps, err := s.Gaps(ctx, "p"); err != nil || len(gaps) != 0 {
			t.Fatalf("gaps after the refused close = %+v, %v; want none", gaps, err)
		}
		changed, err = s.CloseSegmentAt(ctx, "p", 1, seg.ID, numberd.SegmentRetired, 21, gapFrom(21))
		if !changed || err != nil {
			t.Fatalf("close under the current generation = %v, %v", changed, err)
		}
		if got, err := s.Segment(ctx, "p", seg.ID); err != nil || got.State != numberd.SegmentRetired || got.Next != 21 {
			t.Errorf("after the close: %+v, %v; want retired at 21", got, err)
		}
		if gaps, err := s.Gaps(ctx, "p"); err != nil || len(gaps) != 1 || gaps[0].Range.Lo != 21 || gaps[0].Range.Hi != 100 {
			t.Errorf("gaps after the close = %+v, %v; want 21..100", gaps, err)
		}
		if _, err := s.CloseSegmentAt(ctx, "nope", 0, seg.ID, numberd.SegmentRetired, 21, nil); !errors.Is(err, numberd.ErrPoolNotFound) {
			t.Errorf("close in an unknown pool: err = %v, want ErrPoolNotFound", err)
		}
	})
}

func TestRefillLockAndFencing(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		mustPool(t, s, "p", 4)
		f1, err := s.AcquireRefillLock(ctx, "p", "node-a", time.Hour)
		if err != nil || f1 < 1 {
			t.Fatalf("acquire = %d, %v", f1, err)
		}
		if _, err := s.AcquireRefillLock(ctx, "p", "node-b", time.Hour); !errors.Is(err, store.ErrHeld) {
			t.Fatalf("second holder: err = %v, want ErrHeld", err)
		}
		job, err := s.CreateJob(ctx, "p", f1, "yw-1", 100)
		if err != nil || job.State != store.JobRequesting || job.Ywlsh != "yw-1" {
			t.Fatalf("CreateJob = %+v, %v", job, err)
		}
		again, err := s.CreateJob(ctx, "p", f1, "yw-2", 100)
		if err != nil || again.ID != job.ID || again.Ywlsh != "yw-1" {
			t.Errorf("a second CreateJob = %+v, %v; want the open job resumed", again, err)
		}
		if err := s.UpdateJob(ctx, "p", f1, job.ID, 1, "upstream: 503", store.JobRequesting); err != nil {
			t.Fatal(err)
		}
		// The lease runs out; node-b takes over with a higher token.
		if err := s.RenewRefillLock(ctx, "p", "node-a", f1, -time.Second); err != nil {
			t.Fatal(err)
		}
		f2, err := s.AcquireRefillLock(ctx, "p", "node-b", time.Hour)
		if err != nil || f2 <= f1 {
			t.Fatalf("takeover = %d, %v; want a token above %d", f2, err, f1)
		}
		open, ok, err := s.OpenJob(ctx, "p")
		if err != nil || !ok || open.ID != job.ID || open.Attempts != 1 || open.LastError != "upstream: 503" {
			t.Fatalf("OpenJob = %+v %v %v", open, ok, err)
		}
		// node-a's late writes are refused.
		if err := s.UpdateJob(ctx, "p", f1, job.ID, 2, "late", store.JobFailed); !errors.Is(err, store.ErrFenced) {
			t.Errorf("stale UpdateJob: err = %v, want ErrFenced", err)
		}
		r := mustRange(t, "0001", "0100")
		if _, err := s.CompleteJob(ctx, "p", f1, job.ID, numberd.NewSegment{Range: r, Source: numberd.SourceUpstream, Ywlsh: "yw-1"}); !errors.Is(err, store.ErrFenced) {
			t.Errorf("stale CompleteJob: err = %v, want ErrFenced", err)
		}
		if err := s.RenewRefillLock(ctx, "p", "node-a", f1, time.Hour); !errors.Is(err, store.ErrFenced) {
			t.Errorf("stale renewal: err = %v, want ErrFenced", err)
		}
		seg, err := s.CompleteJob(ctx, "p", f2, job.ID, numberd.NewSegment{Range: r, Source: numberd.SourceUpstream, Ywlsh: "yw-1"})
		if err != nil || seg.Source != numberd.SourceUpstream || seg.Ywlsh != "yw-1" {
			t.Fatalf("CompleteJob = %+v, %v", seg, err)
		}
		latest, ok, err := s.LatestJob(ctx, "p")
		if err != nil || !ok || latest.State != store.JobDone || latest.SegmentID != seg.ID {
			t.Errorf("LatestJob = %+v %v %v", latest, ok, err)
		}
		if _, ok, _ := s.OpenJob(ctx, "p"); ok {
			t.Error("a done job is still open")
		}
		// An overlapping grant leaves the job open and adds nothing.
		job2, err := s.CreateJob(ctx, "p", f2, "yw-3", 100)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.CompleteJob(ctx, "p", f2, job2.ID, numberd.NewSegment{Range: mustRange(t, "0050", "0150"), Source: numberd.SourceUpstream, Ywlsh: "yw-3"}); !errors.Is(err, numberd.ErrOverlap) {
			t.Errorf("overlapping grant: err = %v, want ErrOverlap", err)
		}
		if err := s.ReleaseRefillLock(ctx, "p", "node-b", f2); err != nil {
			t.Fatal(err)
		}
		if f3, err := s.AcquireRefillLock(ctx, "p", "node-c", time.Hour); err != nil || f3 <= f2 {
			t.Errorf("acquire after release = %d, %v", f3, err)
		}
		jobs, err := s.Jobs(ctx, "p")
		if err != nil || len(jobs) != 2 {
			t.Errorf("Jobs = %+v, %v", jobs, err)
		}
	})
}

// TestUnsettled: entries are kept once per id, listed once old enough by the
// store's clock, and forgotten.
func TestUnsettled(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		for _, u := range []store.Unsettled{{Pool: "p", ID: "a", Entry: "one"}, {Pool: "p", ID: "a", Entry: "again"}, {Pool: "q", ID: "b", Entry: "two"}} {
			if err := s.PutUnsettled(ctx, u); err != nil {
				t.Fatal(err)
			}
		}
		if old, err := s.OldUnsettled(ctx, time.Hour, 10); err != nil || len(old) != 0 {
			t.Fatalf("entries older than an hour: %v, %v; want none", old, err)
		}
		time.Sleep(20 * time.Millisecond)
		old, err := s.OldUnsettled(ctx, 10*time.Millisecond, 10)
		if err != nil || len(old) != 2 || old[0].Entry != "one" || old[1].Entry != "two" {
			t.Fatalf("old entries: %+v, %v; want one and two", old, err)
		}
		if err := s.DeleteUnsettled(ctx, "p", "a"); err != nil {
			t.Fatal(err)
		}
		if old, err := s.OldUnsettled(ctx, 0, 10); err != nil || len(old) != 1 || old[0].ID != "b" {
			t.Fatalf("after deleting a: %+v, %v; want b", old, err)
		}
	})
}
