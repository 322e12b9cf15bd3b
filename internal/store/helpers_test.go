package store_test

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"

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

// forEachPool runs test on every backend with a pool "p" of digits made.
func forEachPool(t *testing.T, digits int, test func(ctx context.Context, t *testing.T, s *store.Store)) {
	forEachStore(t, func(t *testing.T, s *store.Store) {
		mustPool(t, s, "p", digits)
		test(context.Background(), t, s)
	})
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

// mustAbandonedAhead makes pool p with segment 0001..0100, reserved up to hi,
// its cursor checkpointed at 10, and 12..14 an abandoned gap, which it returns.
func mustAbandonedAhead(tb testing.TB, s *store.Store, hi int64) (numberd.Segment, numberd.Gap) {
	tb.Helper()
	ctx := context.Background()
	mustPool(tb, s, "p", 4)
	a := mustSegment(tb, s, "p", "0001", "0100")
	if err := s.Generations().ReserveAt(ctx, "p", 0, []store.Reservation{{SegmentID: a.ID, From: 0, To: hi}}, []store.Cursor{{SegmentID: a.ID, Next: 10}}); err != nil {
		tb.Fatal(err)
	}
	abandoned := numberd.Gap{Pool: "p", SegmentID: a.ID, Range: a.Range, Reason: numberd.GapAbandoned}
	abandoned.Range.Lo, abandoned.Range.Hi = 12, 14
	if got, err := s.Gaps().AddOutside(ctx, abandoned); err != nil || len(got) != 1 {
		tb.Fatalf("AddOutside = %+v, %v", got, err)
	}
	return a, abandoned
}

// recordedGaps describes pool's gaps as "lo..hi reason", in the order of lo.
func recordedGaps(tb testing.TB, s *store.Store, pool string) []string {
	tb.Helper()
	all, err := s.Gaps().List(context.Background(), pool)
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

// must stops the test at a failed step that the rest of it builds on.
func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}
