package alloc_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/metrics"
	"github.com/numberd/numberd/internal/segment"
	"github.com/numberd/numberd/internal/store"
)

// quiet discards logs, unless NUMBERD_TEST_LOG is set.
var quiet = func() *slog.Logger {
	if os.Getenv("NUMBERD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}()

type harness struct {
	dir     string
	store   *store.Store
	eng     *alloc.Embedded
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
	st, err := store.OpenSQLite(context.Background(), h.dir, quiet)
	if err != nil {
		tb.Fatal(err)
	}
	opts := h.opts
	opts.Logger = quiet
	h.metrics = metrics.New()
	opts.Metrics = h.metrics
	eng, err := alloc.OpenEmbedded(context.Background(), st, opts)
	if err != nil {
		tb.Fatal(err)
	}
	h.store, h.eng = st, eng
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
	tb.Helper()
	if _, _, err := h.eng.PutPool(context.Background(), id, numberd.PoolUpdate{Digits: &digits}); err != nil {
		tb.Fatal(err)
	}
}

func (h *harness) segment(tb testing.TB, pool, start, end string) numberd.SegmentStatus {
	tb.Helper()
	return h.segmentExpiring(tb, pool, start, end, time.Time{})
}

func (h *harness) segmentExpiring(tb testing.TB, pool, start, end string, expires time.Time) numberd.SegmentStatus {
	tb.Helper()
	r, err := segment.ParseRange(start, end, len(start))
	if err != nil {
		tb.Fatal(err)
	}
	s, created, err := h.eng.LoadSegment(context.Background(), pool, numberd.NewSegment{Range: r, Source: numberd.SourceManual, ExpiresAt: expires})
	if err != nil || !created {
		tb.Fatalf("LoadSegment(%s..%s) = %v, %v", start, end, created, err)
	}
	return s
}

func (h *harness) take(tb testing.TB, pool string, count int) []string {
	tb.Helper()
	a, err := h.eng.Allocate(context.Background(), numberd.Request{Pool: pool, Count: count})
	if err != nil {
		tb.Fatalf("Allocate(%s, %d): %v", pool, count, err)
	}
	return a.Numbers()
}

func assertAscending(tb testing.TB, nums []string) {
	tb.Helper()
	for i := 1; i < len(nums); i++ {
		if nums[i] <= nums[i-1] {
			tb.Fatalf("numbers not ascending: %s after %s", nums[i], nums[i-1])
		}
	}
}

func TestConcurrentCallersDrainEverySegmentExactlyOnce(t *testing.T) {
	h := newHarness(t, alloc.Options{LeaseMin: 16})
	h.pool(t, "p", 20)
	segs := [][2]string{
		{"24442000000000000001", "24442000000000000700"},
		{"24442000000000001001", "24442000000000001300"},
		{"25442000000000000001", "25442000000000000500"},
	}
	var loaded []segment.Range
	for _, s := range segs {
		loaded = append(loaded, h.segment(t, "p", s[0], s[1]).Range)
	}
	const callers = 32
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			count := i%5 + 1
			for {
				a, err := h.eng.Allocate(context.Background(), numberd.Request{Pool: "p", Count: count})
				if errors.Is(err, numberd.ErrExhausted) {
					if count == 1 {
						return
					}
					count = 1
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				nums := a.Numbers()
				if len(nums) != count {
					t.Errorf("asked %d, got %d", count, len(nums))
				}
				assertAscending(t, nums)
				mu.Lock()
				for _, n := range nums {
					if seen[n] {
						t.Errorf("number %s handed out twice", n)
					}
					seen[n] = true
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != 1500 {
		t.Errorf("handed out %d numbers, the segments hold 1500", len(seen))
	}
	for n := range seen {
		num, err := segment.ParseNumber(n, 20)
		if err != nil {
			t.Fatal(err)
		}
		in := false
		for _, r := range loaded {
			in = in || r.Contains(num)
		}
		if !in {
			t.Errorf("number %s is in no loaded segment", n)
		}
	}
	st, err := h.eng.Pool(context.Background(), "p")
	if err != nil {
		t.Fatal(err)
	}
	if st.Available != 0 || st.Issued != 1500 || st.Active != nil {
		t.Errorf("status after draining: available %d issued %d active %v", st.Available, st.Issued, st.Active)
	}
}

func TestAllOrNothingAcrossSegments(t *testing.T) {
	h := newHarness(t, alloc.Options{})
	h.pool(t, "p", 4)
	h.segment(t, "p", "0001", "0010")
	h.segment(t, "p", "0101", "0110")
	got := h.take(t, "p", 15)
	want := []string{"0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0010", "0101", "0102", "0103", "0104", "0105"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if _, err := h.eng.Allocate(context.Background(), numberd.Request{Pool: "p", Count: 6}); !errors.Is(err, numberd.ErrExhausted) {
		t.Fatalf("asking 6 of 5: err = %v, want ErrExhausted", err)
	}
	if got := h.take(t, "p", 5); got[0] != "0106" || got[4] != "0110" {
		t.Errorf("after a refused request got %v, want 0106..0110: nothing may be consumed on failure", got)
	}
	if _, err := h.eng.Allocate(context.Background(), numberd.Request{Pool: "p", Count: 1}); !errors.Is(err, numberd.ErrExhausted) {
		t.Errorf("empty pool: err = %v, want ErrExhausted", err)
	}
}

func TestInvalidRequests(t *testing.T) {
	h := newHarness(t, alloc.Options{})
	h.pool(t, "p", 4)
	for _, count := range []int{0, -1, numberd.MaxCount + 1} {
		if _, err := h.eng.Allocate(context.Background(), numberd.Request{Pool: "p", Count: count}); !errors.Is(err, numberd.ErrInvalid) {
			t.Errorf("count %d: err = %v, want ErrInvalid", count, err)
		}
	}
	if _, err := h.eng.Allocate(context.Background(), numberd.Request{Pool: "nope", Count: 1}); !errors.Is(err, numberd.ErrPoolNotFound) {
		t.Errorf("unknown pool: err = %v, want ErrPoolNotFound", err)
	}
}

func TestIdempotentReplay(t *testing.T) {
	h := newHarness(t, alloc.Options{})
	h.pool(t, "p", 6)
	h.segment(t, "p", "000001", "000100")
	key := &numberd.Idempotency{Scope: "caller-a", Key: "invoice-17"}
	first, err := h.eng.Allocate(context.Background(), numberd.Request{Pool: "p", Count: 3, Idempotency: key})
	if err != nil || first.Replayed {
		t.Fatalf("first: replayed %v, %v", first.Replayed, err)
	}
	again, err := h.eng.Allocate(context.Background(), numberd.Request{Pool: "p", Count: 3, Idempotency: key})
	if err != nil || !again.Replayed {
		t.Fatalf("replay: replayed %v, %v", again.Replayed, err)
	}
	if a, b := first.Numbers(), again.Numbers(); len(a) != 3 || a[0] != b[0] || a[2] != b[2] {
		t.Errorf("replay answered %v, first answer %v", b, a)
	}
	if _, err := h.eng.Allocate(context.Background(), numberd.Request{Pool: "p", Count: 4, Idempotency: key}); !errors.Is(err, numberd.ErrIdempotencyConflict) {
		t.Errorf("same key, other count: err = %v, want ErrIdempotencyConflict", err)
	}
	other, err := h.eng.Allocate(context.Background(), numberd.Request{Pool: "p", Count: 3, Idempotency: &numberd.Idempotency{Scope: "caller-b", Key: "invoice-17"}})
	if err != nil || other.Replayed || other.Numbers()[0] != "000004" {
		t.Errorf("same key, other caller: %v replayed %v, %v; want fresh numbers from 000004", other.Numbers(), other.Replayed, err)
	}
	// A replay survives a restart: the record is durable.
	h.restart(t)
	again, err = h.eng.Allocate(context.Background(), numberd.Request{Pool: "p", Count: 3, Idempotency: key})
	if err != nil || !again.Replayed || again.Numbers()[0] != first.Numbers()[0] {
		t.Errorf("replay after restart: %v replayed %v, %v", again.Numbers(), again.Replayed, err)
	}
}

func TestConcurrentCallsWithOneKeyGetOneAnswer(t *testing.T) {
	h := newHarness(t, alloc.Options{})
	h.pool(t, "p", 6)
	h.segment(t, "p", "000001", "000100")
	key := &numberd.Idempotency{Scope: "c", Key: "k"}
	answers := make([][]string, 12)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Go(func() {
			a, err := h.eng.Allocate(context.Background(), numberd.Request{Pool: "p", Count: 2, Idempotency: key})
			if err != nil {
				t.Error(err)
				return
			}
			answers[i] = a.Numbers()
		})
	}
	wg.Wait()
	for i, a := range answers {
		if len(a) != 2 || a[0] != answers[0][0] || a[1] != answers[0][1] {
			t.Errorf("call %d got %v, call 0 got %v", i, a, answers[0])
		}
	}
	if next := h.take(t, "p", 1); next[0] != "000003" {
		t.Errorf("next number %s, want 000003: twelve calls with one key consume once", next[0])
	}
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

func TestExpiredSegmentsBecomeGaps(t *testing.T) {
	now := time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	h := newHarness(t, alloc.Options{Now: clock})
	h.pool(t, "p", 4)
	h.segmentExpiring(t, "p", "0001", "0100", now.Add(time.Hour))
	h.segment(t, "p", "0201", "0300")
	h.take(t, "p", 10)
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	if got := h.take(t, "p", 1); got[0] != "0201" {
		t.Errorf("after expiry got %s, want 0201 from the next segment", got[0])
	}
	gaps, err := h.eng.Gaps(context.Background(), "p")
	if err != nil {
		t.Fatal(err)
	}
	if len(gaps) != 1 || gaps[0].Reason != numberd.GapExpired || gaps[0].Range.Start() != "0011" || gaps[0].Range.End() != "0100" {
		t.Errorf("gaps = %+v, want expired 0011..0100", gaps)
	}
	st, err := h.eng.Pool(context.Background(), "p")
	if err != nil {
		t.Fatal(err)
	}
	if st.Available != 99 || st.Issued != 11 {
		t.Errorf("available %d issued %d, want 99 and 11", st.Available, st.Issued)
	}
}

func TestRetireSegment(t *testing.T) {
	h := newHarness(t, alloc.Options{})
	h.pool(t, "p", 4)
	first := h.segment(t, "p", "0001", "0100")
	h.segment(t, "p", "0201", "0300")
	h.take(t, "p", 5)
	for range 2 {
		s, err := h.eng.RetireSegment(context.Background(), "p", first.ID)
		if err != nil || s.State != numberd.StatusRetired {
			t.Fatalf("retire: state %q, %v", s.State, err)
		}
	}
	if got := h.take(t, "p", 1); got[0] != "0201" {
		t.Errorf("after retiring got %s, want 0201", got[0])
	}
	gaps, err := h.eng.Gaps(context.Background(), "p")
	if err != nil {
		t.Fatal(err)
	}
	if len(gaps) != 1 || gaps[0].Reason != numberd.GapRetired || gaps[0].Range.Start() != "0006" || gaps[0].Count() != 95 {
		t.Errorf("gaps = %+v, want one retired gap 0006..0100", gaps)
	}
	if _, err := h.eng.RetireSegment(context.Background(), "p", 999); !errors.Is(err, numberd.ErrSegmentNotFound) {
		t.Errorf("unknown segment: err = %v, want ErrSegmentNotFound", err)
	}
	h.restart(t)
	if got := h.take(t, "p", 1); got[0] != "0202" {
		t.Errorf("after restart got %s, want 0202: a retired segment stays retired", got[0])
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

func TestStatusCountsAddUp(t *testing.T) {
	h := newHarness(t, alloc.Options{})
	h.pool(t, "p", 4)
	h.segment(t, "p", "0001", "0100")
	h.segment(t, "p", "0201", "0300")
	h.segment(t, "p", "0401", "0450")
	h.take(t, "p", 30)
	st, err := h.eng.Pool(context.Background(), "p")
	if err != nil {
		t.Fatal(err)
	}
	if st.Available != 220 || st.Issued != 30 || st.Queued != 2 || st.Active == nil || st.Active.Next != 31 {
		t.Errorf("status = available %d issued %d queued %d active %+v", st.Available, st.Issued, st.Queued, st.Active)
	}
	pools, err := h.eng.Pools(context.Background())
	if err != nil || len(pools) != 1 || pools[0].ID != "p" {
		t.Errorf("Pools = %+v, %v", pools, err)
	}
	segs, err := h.eng.Segments(context.Background(), "p")
	if err != nil {
		t.Fatal(err)
	}
	states := []string{segs[0].State, segs[1].State, segs[2].State}
	sort.Strings(states)
	if segs[0].State != numberd.StatusActive || segs[1].State != numberd.StatusQueued || segs[2].State != numberd.StatusQueued {
		t.Errorf("states = %v", states)
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
