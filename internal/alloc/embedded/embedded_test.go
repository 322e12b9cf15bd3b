package embedded_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/alloc/alloctest"
	"github.com/numberd/numberd/internal/alloc/embedded"
	"github.com/numberd/numberd/internal/metrics"
	"github.com/numberd/numberd/internal/segment"
	"github.com/numberd/numberd/internal/store"
)

type harness struct {
	dir     string
	store   *store.Store
	eng     *embedded.Engine
	opts    alloc.Options
	metrics *metrics.Metrics
}

func newHarness(tb testing.TB, opts alloc.Options) *harness {
	tb.Helper()
	h := &harness{dir: tb.TempDir(), opts: opts}
	h.open(tb)
	tb.Cleanup(func() {
		_ = h.eng.Close(context.Background())
		_ = h.store.Close()
	})
	return h
}

func (h *harness) open(tb testing.TB) {
	tb.Helper()
	st, err := store.OpenSQLite(context.Background(), h.dir, alloctest.Quiet)
	if err != nil {
		tb.Fatal(err)
	}
	opts := h.opts
	opts.Logger = alloctest.Quiet
	h.metrics = metrics.New()
	opts.Metrics = h.metrics
	eng, err := embedded.Open(context.Background(), st, opts)
	if err != nil {
		tb.Fatal(err)
	}
	h.store, h.eng = st, eng
}

// TestContract runs the engine contract against the embedded engine.
func TestContract(t *testing.T) {
	alloctest.Run(t, func(tb testing.TB, opts alloc.Options) (alloctest.Engine, func() alloctest.Engine) {
		h := newHarness(tb, opts)
		return h.eng, func() alloctest.Engine { h.restart(tb); return h.eng }
	})
}

// crash drops the engine's memory the way kill -9 would: the store keeps only what
// was written, and the engine is not given the chance to hand reservations back.
func (h *harness) crash(tb testing.TB) {
	tb.Helper()
	if err := h.store.Close(); err != nil {
		tb.Fatal(err)
	}
	// With its store closed, Close can write nothing: it only waits for the engine's
	// goroutines, whose last store write may still land, as it could before a kill.
	_ = h.eng.Close(context.Background())
	h.open(tb)
}

// restart stops the engine cleanly and opens it again.
func (h *harness) restart(tb testing.TB) {
	tb.Helper()
	if err := h.eng.Close(context.Background()); err != nil {
		tb.Fatal(err)
	}
	if err := h.store.Close(); err != nil {
		tb.Fatal(err)
	}
	h.open(tb)
}

func (h *harness) pool(tb testing.TB, id string, digits int) {
	alloctest.MustPool(tb, h.eng, id, digits)
}

func (h *harness) segment(tb testing.TB, pool, start, end string) numberd.SegmentStatus {
	return alloctest.MustSegment(tb, h.eng, pool, start, end, time.Time{})
}

func (h *harness) take(tb testing.TB, pool string, count int) []string {
	return alloctest.Take(tb, h.eng, pool, count)
}

func TestReservesAheadNotPerNumber(t *testing.T) {
	h := newHarness(t, alloc.Options{LeaseMin: 100})
	h.pool(t, "p", 6)
	seg := h.segment(t, "p", "000001", "100000")
	for range 2000 {
		h.take(t, "p", 1)
	}
	got, err := h.store.Segment(context.Background(), "p", seg.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ReservedHi < 2000 {
		t.Fatalf("durable high-water mark %d is below the 2000 numbers handed out", got.ReservedHi)
	}
	// Count the store writes through the reservation metric of a fresh engine run.
	h.restart(t)
	for range 2000 {
		h.take(t, "p", 1)
	}
	if n := testutil.ToFloat64(h.metrics.Reservations.WithLabelValues("ok")); n > 40 || n < 1 {
		t.Errorf("%v reservations for 2000 numbers with a lease of at least 100; want a few, not one per number", n)
	}
}

func TestCrashResumesAboveTheHighWaterMark(t *testing.T) {
	h := newHarness(t, alloc.Options{LeaseMin: 50})
	h.pool(t, "p", 6)
	seg := h.segment(t, "p", "000001", "001000")
	issued := map[string]bool{}
	for range 30 {
		for _, n := range h.take(t, "p", 3) {
			issued[n] = true
		}
	}
	h.crash(t)
	after := h.take(t, "p", 5)
	for _, n := range after {
		if issued[n] {
			t.Fatalf("number %s handed out again after a crash", n)
		}
	}
	gaps, err := h.eng.Gaps(context.Background(), "p")
	if err != nil {
		t.Fatal(err)
	}
	// The gap runs from at most the first number not handed out to just below the
	// first number handed out after the crash.
	if len(gaps) != 1 || gaps[0].Reason != numberd.GapRecovery || gaps[0].Range.Lo > 91 || seg.Range.Format(gaps[0].Range.Hi+1) != after[0] {
		t.Fatalf("gaps after crash = %+v, want one recovery gap from at most 91 up to below %s", gaps, after[0])
	}
	st, err := h.eng.Pool(context.Background(), "p")
	if err != nil {
		t.Fatal(err)
	}
	if total := st.Available + st.Issued + gaps[0].Count(); total != 1000 {
		t.Errorf("available %d + issued %d + gap %d = %d, want the segment's 1000", st.Available, st.Issued, gaps[0].Count(), total)
	}
	// A second crash right after a recovery repeats it harmlessly.
	h.crash(t)
	for _, n := range h.take(t, "p", 5) {
		if issued[n] || n == after[0] {
			t.Fatalf("number %s handed out again after a second crash", n)
		}
	}
}

func TestCleanRestartSkipsNothing(t *testing.T) {
	h := newHarness(t, alloc.Options{LeaseMin: 50})
	h.pool(t, "p", 6)
	h.segment(t, "p", "000001", "001000")
	h.segment(t, "p", "002001", "003000")
	h.take(t, "p", 999)
	h.restart(t)
	if got := h.take(t, "p", 2); got[0] != "001000" || got[1] != "002001" {
		t.Errorf("after a clean restart got %v, want 001000 and 002001", got)
	}
	gaps, err := h.eng.Gaps(context.Background(), "p")
	if err != nil || len(gaps) != 0 {
		t.Errorf("gaps after a clean restart = %+v, %v; want none", gaps, err)
	}
	segs, err := h.eng.Segments(context.Background(), "p")
	if err != nil {
		t.Fatal(err)
	}
	if segs[0].State != numberd.StatusExhausted || segs[1].State != numberd.StatusActive || segs[1].Used != 1 {
		t.Errorf("segment states %s/%s used %d", segs[0].State, segs[1].State, segs[1].Used)
	}
}

func TestStoreFailureConsumesNothing(t *testing.T) {
	h := newHarness(t, alloc.Options{LeaseMin: 10, LeaseMax: 10, StoreTimeout: time.Second})
	h.pool(t, "p", 4)
	h.segment(t, "p", "0001", "1000")
	h.take(t, "p", 1)
	if err := h.store.Close(); err != nil {
		t.Fatal(err)
	}
	var unavailable int
	for range 50 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := h.eng.Allocate(ctx, numberd.Request{Pool: "p", Count: 7})
		cancel()
		if err != nil {
			if !errors.Is(err, numberd.ErrUnavailable) {
				t.Fatalf("allocation without a store: err = %v, want ErrUnavailable", err)
			}
			unavailable++
			break
		}
	}
	if unavailable == 0 {
		t.Fatal("allocations went on for 350 numbers with a lease of 10 and no store")
	}
	if err := h.eng.Ready(context.Background()); !errors.Is(err, numberd.ErrUnavailable) {
		t.Errorf("Ready = %v, want ErrUnavailable", err)
	}
}

// Allocations without a key take numbers off the pool's window without its mutex;
// everything else locks the pool, which takes the window back. This races the two:
// tiny leases (a reservation every few numbers), checkpoints every millisecond,
// status reads, keyed allocations and the retirement of the active segment, all
// while callers take numbers. Every number must go out once, never from a gap,
// and the issued count the lock holders see must be exactly what went out.
func TestWindowTakesRaceLockHolders(t *testing.T) {
	h := newHarness(t, alloc.Options{LeaseMin: 4, LeaseMax: 8, CheckpointEvery: time.Millisecond})
	h.pool(t, "p", 4)
	first := h.segment(t, "p", "0001", "3000")
	h.segment(t, "p", "4001", "9999")
	ctx := context.Background()

	var mu sync.Mutex
	seen := map[string]bool{}
	record := func(nums []string) {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range nums {
			if seen[n] {
				t.Errorf("number %s handed out twice", n)
			}
			seen[n] = true
		}
	}
	stop := make(chan struct{})
	var callers, lockers sync.WaitGroup
	for i := range 12 {
		callers.Go(func() {
			for k := 0; k < 250; k++ {
				req := numberd.Request{Pool: "p", Count: i%3 + 1}
				if i == 0 && k%10 == 0 {
					req.Idempotency = &numberd.Idempotency{Scope: "s", Key: "k" + strconv.Itoa(k)}
				}
				a, err := h.eng.Allocate(ctx, req)
				if err != nil {
					t.Error(err)
					return
				}
				record(a.Numbers())
			}
		})
	}
	lockers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := h.eng.Pool(ctx, "p"); err != nil {
				t.Error(err)
				return
			}
		}
	})
	// Retire the first segment once the callers are well into it.
	for {
		st, err := h.eng.Pool(ctx, "p")
		if err != nil {
			t.Fatal(err)
		}
		if st.Issued >= 1000 {
			break
		}
		time.Sleep(100 * time.Microsecond)
	}
	if _, err := h.eng.RetireSegment(ctx, "p", first.ID); err != nil {
		t.Fatal(err)
	}
	callers.Wait()
	close(stop)
	lockers.Wait()

	gaps, err := h.eng.Gaps(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	for n := range seen {
		num, err := segment.ParseNumber(n, 4)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range gaps {
			if g.Range.Contains(num) {
				t.Errorf("number %s handed out from the %s gap %s..%s", n, g.Reason, g.Range.Start(), g.Range.End())
			}
		}
	}
	st, err := h.eng.Pool(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if st.Issued != int64(len(seen)) {
		t.Errorf("the pool counts %d numbers issued, %d went out", st.Issued, len(seen))
	}
	// A clean restart resumes at the cursors the lock holders took back.
	h.restart(t)
	record(h.take(t, "p", 100))
}
