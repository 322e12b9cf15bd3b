package refill_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/alloc/embedded"
	"github.com/numberd/numberd/internal/metrics"
	"github.com/numberd/numberd/internal/refill"
	"github.com/numberd/numberd/internal/segment"
	"github.com/numberd/numberd/internal/store"
	"github.com/numberd/numberd/internal/testenv"
	"github.com/numberd/numberd/internal/upstreamsim"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// upstreamFunc is an Upstream made of a function.
type upstreamFunc func(ctx context.Context, pool string, quantity int64, ywlsh string) (refill.Grant, error)

func (f upstreamFunc) Apply(ctx context.Context, pool string, quantity int64, ywlsh string) (refill.Grant, error) {
	return f(ctx, pool, quantity, ywlsh)
}

// rig is an embedded engine and the refill workers that feed it.
type rig struct {
	store   *store.Store
	eng     *embedded.Engine
	metrics *metrics.Metrics
	workers []*refill.Worker
}

func newRig(tb testing.TB, ups map[string]refill.Upstream, workers int, lockTTL time.Duration) *rig {
	tb.Helper()
	st, err := store.OpenSQLite(context.Background(), tb.TempDir(), quiet)
	if err != nil {
		tb.Fatal(err)
	}
	r := &rig{store: st, metrics: metrics.New()}
	var observers []*refill.Worker
	r.eng, err = embedded.Open(context.Background(), st, alloc.Options{Logger: quiet, Metrics: r.metrics, Observe: func(pool string, available int64) {
		for _, w := range observers {
			w.Observe(pool, available)
		}
	}})
	if err != nil {
		tb.Fatal(err)
	}
	for i := range workers {
		w := refill.New(refill.Config{
			Store: st, Engine: r.eng, Upstreams: ups, Logger: quiet, Metrics: r.metrics,
			Node: "node-" + string(rune('a'+i)), LockTTL: lockTTL, ScanEvery: 50 * time.Millisecond,
			BackoffMin: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond,
		})
		observers = append(observers, w)
		r.workers = append(r.workers, w)
	}
	for _, w := range r.workers {
		w.Start()
	}
	tb.Cleanup(func() {
		for _, w := range r.workers {
			_ = w.Close(context.Background())
		}
		_ = r.eng.Close(context.Background())
		_ = st.Close()
	})
	return r
}

func (r *rig) pool(tb testing.TB, id string, threshold, quantity int64, upstream string) {
	tb.Helper()
	digits := 20
	if _, _, err := r.eng.PutPool(context.Background(), id, numberd.PoolUpdate{
		Digits: &digits, RefillThreshold: &threshold, RefillQuantity: &quantity, Upstream: &upstream,
	}); err != nil {
		tb.Fatal(err)
	}
}

func (r *rig) upstreamSegments(tb testing.TB, pool string) []numberd.Segment {
	tb.Helper()
	segs, err := r.store.Segments(context.Background(), pool)
	if err != nil {
		tb.Fatal(err)
	}
	var out []numberd.Segment
	for _, s := range segs {
		if s.Source == numberd.SourceUpstream {
			out = append(out, s)
		}
	}
	return out
}

func TestRefillKeepsAPoolServing(t *testing.T) {
	sim, err := upstreamsim.New(upstreamsim.Options{Digits: 20, First: "24442000000000000001", FailRate: 0.2, LoseRate: 0.2, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	defer srv.Close()
	up, err := refill.NewHTTPUpstream(srv.URL, "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, map[string]refill.Upstream{"sim": up}, 2, time.Second)
	r.pool(t, "p", 50, 500, "sim")
	// The pool starts empty: the scan sees it and the first segment arrives.
	testenv.Eventually(t, 10*time.Second, "the first segment", func() bool { return len(r.upstreamSegments(t, "p")) > 0 })

	seen := map[string]bool{}
	var mu sync.Mutex
	var exhausted atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 150 {
				a, err := r.eng.Allocate(context.Background(), numberd.Request{Pool: "p", Count: 1})
				if errors.Is(err, numberd.ErrExhausted) {
					exhausted.Add(1)
					time.Sleep(5 * time.Millisecond)
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, n := range a.Numbers() {
					if seen[n] {
						t.Errorf("number %s handed out twice", n)
					}
					seen[n] = true
				}
				mu.Unlock()
				// A pace the upstream keeps up with, failures and retries included,
				// even on a busy machine: 800 numbers a second, 500 a download.
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	// Let the last download land: no job open, and none needed.
	testenv.Eventually(t, 10*time.Second, "refills to settle", func() bool {
		open, _, err := r.store.Refills().OpenJob(context.Background(), "p")
		st, serr := r.workers[0].Status(context.Background(), "p")
		pst, perr := r.eng.Pool(context.Background(), "p")
		return err == nil && serr == nil && perr == nil && open.ID == 0 && pst.Available > st.EffectiveThreshold
	})
	for _, w := range r.workers {
		_ = w.Close(context.Background())
	}
	segs := r.upstreamSegments(t, "p")
	stats := sim.Stats()
	if int64(len(segs)) != stats.Granted {
		t.Errorf("stored %d upstream segments, the simulator granted %d: each grant must be stored exactly once", len(segs), stats.Granted)
	}
	ywlsh := map[string]bool{}
	for _, s := range segs {
		if ywlsh[s.Ywlsh] {
			t.Errorf("ywlsh %s stored twice", s.Ywlsh)
		}
		ywlsh[s.Ywlsh] = true
	}
	if exhausted.Load() > 0 {
		t.Errorf("%d requests met an empty pool while the upstream kept up", exhausted.Load())
	}
	if len(seen) != 8*150 {
		t.Errorf("handed out %d numbers, want %d", len(seen), 8*150)
	}
	t.Logf("%d segments over %d applies; %d numbers", len(segs), stats.Applies, len(seen))
}

func TestRetriesRepeatTheSameYwlsh(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	fail := 3
	up := upstreamFunc(func(_ context.Context, pool string, quantity int64, ywlsh string) (refill.Grant, error) {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, ywlsh)
		if len(asked) <= fail {
			return refill.Grant{}, errors.New("upstream: 503 Service Unavailable")
		}
		return refill.Grant{Ywlsh: ywlsh, Start: "24442000000000000001", End: "24442000000000000100"}, nil
	})
	r := newRig(t, map[string]refill.Upstream{"u": up}, 1, time.Second)
	r.pool(t, "p", 10, 100, "u")
	testenv.Eventually(t, 5*time.Second, "a stored segment", func() bool { return len(r.upstreamSegments(t, "p")) == 1 })
	mu.Lock()
	defer mu.Unlock()
	for _, y := range asked {
		if y != asked[0] {
			t.Fatalf("asked with ywlsh %v: a retry must repeat the same one", asked)
		}
	}
	jobs, err := r.store.Refills().Jobs(context.Background(), "p")
	if err != nil || len(jobs) != 1 || jobs[0].Attempts < fail || jobs[0].State != store.JobDone {
		t.Errorf("jobs = %+v, %v; want one done job after %d failed attempts", jobs, err, fail)
	}
}

func TestUnusableGrantsAreRefused(t *testing.T) {
	tests := []struct {
		name       string
		start, end string
		why        string
	}{
		{"overlapping", "24442000000000000050", "24442000000000000149", "overlaps"},
		{"malformed", "2444200000000000x001", "24442000000000000100", "non-digit"},
		{"wrong width", "2444200000000000001", "2444200000000000100", "digits"},
		{"backwards", "24442000000000000900", "24442000000000000800", "above"},
		{"larger than asked", "24442000000000001001", "24442000000000002000", "more than the 100 asked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := upstreamFunc(func(_ context.Context, _ string, _ int64, ywlsh string) (refill.Grant, error) {
				return refill.Grant{Ywlsh: ywlsh, Start: tt.start, End: tt.end}, nil
			})
			r := newRig(t, map[string]refill.Upstream{"u": up}, 1, time.Second)
			r.pool(t, "p", 10, 100, "u")
			rng, _ := segment.ParseRange("24442000000000000001", "24442000000000000100", 20)
			if _, _, err := r.eng.LoadSegment(context.Background(), "p", numberd.NewSegment{Range: rng, Source: numberd.SourceManual}); err != nil {
				t.Fatal(err)
			}
			for range 95 {
				if _, err := r.eng.Allocate(context.Background(), numberd.Request{Pool: "p", Count: 1}); err != nil {
					t.Fatal(err)
				}
			}
			var st numberd.RefillStatus
			testenv.Eventually(t, 5*time.Second, "a failed refill", func() bool {
				var err error
				st, err = r.workers[0].Status(context.Background(), "p")
				return err == nil && st.State == numberd.RefillFailed
			})
			if !strings.Contains(st.LastError, tt.why) || st.Ywlsh == "" {
				t.Errorf("refill status = %+v, want last_error mentioning %q", st, tt.why)
			}
			if n := len(r.upstreamSegments(t, "p")); n != 0 {
				t.Errorf("%d upstream segments stored", n)
			}
			a, err := r.eng.Allocate(context.Background(), numberd.Request{Pool: "p", Count: 5})
			if err != nil || a.Numbers()[0] != "24442000000000000096" {
				t.Errorf("the pool's own numbers after a refused grant: %v, %v", a.Numbers(), err)
			}
		})
	}
}

func TestALateHolderIsFenced(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	var first string
	var mu sync.Mutex
	up := upstreamFunc(func(ctx context.Context, _ string, _ int64, ywlsh string) (refill.Grant, error) {
		mu.Lock()
		if first == "" {
			first = ywlsh
		}
		mu.Unlock()
		if calls.Add(1) == 1 {
			<-release // the first holder hangs past its lease
		}
		return refill.Grant{Ywlsh: ywlsh, Start: "24442000000000000001", End: "24442000000000000100"}, nil
	})
	m := metrics.New()
	st, eng := openPool(t, m)
	newWorker := func(node string, ttl, renew time.Duration) *refill.Worker {
		return refill.New(refill.Config{Store: st, Engine: eng, Upstreams: map[string]refill.Upstream{"u": up}, Logger: quiet, Metrics: m,
			Node: node, LockTTL: ttl, RenewEvery: renew, ScanEvery: time.Hour, BackoffMin: time.Millisecond})
	}
	// The first holder's lease is short and it does not renew it in time, as a
	// process paused with SIGSTOP would not.
	a := newWorker("node-a", 150*time.Millisecond, time.Hour)
	a.Start()
	defer a.Close(context.Background())
	if _, err := a.Trigger(context.Background(), "p"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "node-a's call", func() bool { return calls.Load() == 1 })
	b := newWorker("node-b", time.Minute, 0)
	b.Start()
	defer b.Close(context.Background())
	testenv.Eventually(t, 5*time.Second, "node-b's takeover", func() bool {
		_, _ = b.Trigger(context.Background(), "p")
		segs, _ := st.Segments(context.Background(), "p")
		return len(segs) == 1
	})
	close(release)
	testenv.Eventually(t, 5*time.Second, "node-a's refused write", func() bool {
		return testutil.ToFloat64(m.RefillFenced) >= 1
	})
	segs, err := st.Segments(context.Background(), "p")
	if err != nil || len(segs) != 1 || segs[0].Ywlsh != first {
		t.Errorf("segments = %+v, %v; want one, of node-a's ywlsh %s finished by node-b", segs, err, first)
	}
}

// TestATriggerOutlastsAnotherNodesLook asks for a refill while another node holds
// the pool's lock, as it does for a moment whenever it looks at the pool: the
// request waits the lock out instead of being dropped.
func TestATriggerOutlastsAnotherNodesLook(t *testing.T) {
	var calls atomic.Int32
	up := upstreamFunc(func(_ context.Context, _ string, _ int64, ywlsh string) (refill.Grant, error) {
		calls.Add(1)
		return refill.Grant{Ywlsh: ywlsh, Start: "24442000000000000001", End: "24442000000000000100"}, nil
	})
	st, eng := openPool(t, metrics.New())
	fence, err := st.Refills().AcquireLock(context.Background(), "p", "node-b", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	w := refill.New(refill.Config{Store: st, Engine: eng, Upstreams: map[string]refill.Upstream{"u": up}, Logger: quiet,
		Node: "node-a", LockTTL: 2 * time.Second, ScanEvery: time.Hour, BackoffMin: time.Millisecond})
	w.Start()
	defer w.Close(context.Background())
	if _, err := w.Trigger(context.Background(), "p"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if n := calls.Load(); n != 0 {
		t.Fatalf("%d upstream calls while another node held the lock", n)
	}
	if err := st.Refills().ReleaseLock(context.Background(), "p", "node-b", fence); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 3*time.Second, "the download asked for", func() bool { return len(mustSegments(t, st)) == 1 })
	if n := calls.Load(); n != 1 {
		t.Errorf("%d upstream calls, want 1", n)
	}
}

func mustSegments(tb testing.TB, st *store.Store) []numberd.Segment {
	tb.Helper()
	segs, err := st.Segments(context.Background(), "p")
	if err != nil {
		tb.Fatal(err)
	}
	return segs
}

// openPool opens an embedded engine on a fresh SQLite store with pool "p", which
// refills 100 numbers at a time from upstream "u" when fewer than 10 are left.
func openPool(t *testing.T, m *metrics.Metrics) (*store.Store, *embedded.Engine) {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), t.TempDir(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	eng, err := embedded.Open(context.Background(), st, alloc.Options{Logger: quiet, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close(context.Background()) })
	digits, threshold, quantity, name := 20, int64(10), int64(100), "u"
	if _, _, err := eng.PutPool(context.Background(), "p", numberd.PoolUpdate{Digits: &digits, RefillThreshold: &threshold, RefillQuantity: &quantity, Upstream: &name}); err != nil {
		t.Fatal(err)
	}
	return st, eng
}
