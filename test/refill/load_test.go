package refill_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/numberd/numberd/internal/testenv"
	"github.com/numberd/numberd/test/harness"
)

// The load of TestRefillUnderLoad. 24 clients each ask for 1, 2 or 3 numbers
// (2 on average) every 300 ms, spread over three nodes: about 160 numbers a
// second. The pool starts a download at 1000 available, so the numbers left last
// about 6 s at that pace, while a download from a simulator that fails or loses
// 36% of its calls (1 − 0.8 × 0.8) takes a few hundred milliseconds: the worker
// backs off 200 ms doubling, with full jitter, and needs 6 failures in a row
// (p ≈ 0.2%) to spend 6 s. So the upstream keeps up, and a pool that runs dry
// after its first segment is the worker's fault. Downloads of 250 numbers make
// about a dozen of them in 10 s.
const (
	burnClients   = 24
	burnEvery     = 300 * time.Millisecond
	burnMaxCount  = 3
	burnFor       = 10 * time.Second
	burnThreshold = 1000
	burnQuantity  = 250
	// burnSeed seeds the simulator's fail and lose draws. The downloads are
	// single-flight, so its calls come one at a time and the seed fixes what each
	// answers: with 10 the 3rd and 5th calls lose their reply and the 4th fails,
	// so every run repeats a ywlsh whose segment was granted.
	burnSeed = "10"
)

// burn counts the answers of the clients of TestRefillUnderLoad.
type burn struct {
	ok        atomic.Int64
	firstOK   atomic.Int64 // unix nanos of the first 200 answer
	exhausted atomic.Int64 // pool_exhausted before the first segment
	dry       atomic.Int64 // pool_exhausted for a request sent after the first 200
	retryHint atomic.Int64 // pool_exhausted answers with Retry-After
	maxWait   atomic.Int64 // nanoseconds, of any answer
}

// TestRefillUnderLoad: three nodes serve a pool fed only by an upstream simulator
// that fails 20% of its calls and loses 20% of its replies, while 24 clients
// allocate. Every segment the simulator granted must be stored exactly once, each
// under its own ywlsh; no number may be handed out twice, or from outside those
// segments; and once the first segment arrived, no request may find the pool
// empty.
func TestRefillUnderLoad(t *testing.T) {
	sim := startSim(t, "--first", number("24442", 1), "--latency", "20ms", "--fail-rate", "0.2", "--lose-rate", "0.2", "--seed", burnSeed)
	cl := startCluster(t, 3, simUpstream(sim))
	const pool = "burn"
	cl.mustPool(pool, upstreamName, burnThreshold, burnQuantity)

	l := harness.NewLedger(t)
	var b burn
	stop := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for w := range burnClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl.burnClient(w, pool, l, &b, stop)
		}()
	}
	time.Sleep(burnFor)
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)

	// Settled: no download under way, the pool above its threshold, and nothing
	// changing over a few scans.
	var st harness.PoolStatus
	var stats harness.SimStats
	var segs []harness.Segment
	testenv.Eventually(t, 30*time.Second, "the refills settle", func() bool {
		st = cl.status(pool)
		if st.Refill.State == "requesting" || st.AvailableN() <= max(st.RefillThreshold, st.Refill.EffectiveThreshold) {
			return false
		}
		stats, segs = sim.MustStats(t), cl.segments(pool)
		time.Sleep(3 * refillScan)
		again := cl.status(pool)
		return again.Refill.State != "requesting" && sim.MustStats(t) == stats && len(cl.segments(pool)) == len(segs)
	})

	ups := bySource(segs, "upstream")
	var stored int64
	for _, s := range ups {
		stored += s.SizeN()
	}
	if int64(len(ups)) != stats.Granted {
		t.Errorf("the simulator granted %d segments, the pool stored %d from upstream: %s", stats.Granted, len(ups), segmentsOf(segs))
	}
	if stored != stats.Numbers {
		t.Errorf("the simulator granted %d numbers, the pool's upstream segments hold %d", stats.Numbers, stored)
	}
	if len(ups) != len(segs) {
		t.Errorf("the pool has segments not from upstream: %s", segmentsOf(segs))
	}
	checkUpstreamSegments(t, segs)
	if st.Refill.State != "idle" {
		t.Errorf("refill state after settling is %q (last_error %q), want idle: the simulator's failures are all retryable", st.Refill.State, st.Refill.LastError)
	}

	// Every number handed out comes from a granted segment, and the pool counts
	// exactly the numbers the clients got (all or nothing: a refused request took none).
	for _, n := range l.Numbers() {
		in := false
		for _, s := range ups {
			if n >= s.Start && n <= s.End {
				in = true
				break
			}
		}
		if !in {
			t.Errorf("number %s handed out lies in no upstream segment", n)
			break
		}
	}
	if got, want := st.IssuedN(), int64(l.Count()); got != want {
		t.Errorf("pool status issued = %d, the clients got %d numbers", got, want)
	}
	if l.Duplicates() != 0 {
		t.Errorf("%d duplicate numbers", l.Duplicates())
	}
	if n := b.dry.Load(); n > 0 {
		t.Errorf("%d requests sent after the first segment arrived found the pool exhausted", n)
	}
	if b.ok.Load() == 0 {
		t.Fatal("no allocation succeeded: the pool was never refilled")
	}

	// The simulator's misbehaviour happened and was answered with the same ywlsh.
	var lost, failed, started, resumed int
	for _, n := range cl.nodes {
		for _, rec := range poolLogs(n, "refill attempt failed; repeating the same ywlsh", pool) {
			switch e := str(rec, "err"); {
			case strings.Contains(e, "simulated lost reply"):
				lost++
			case strings.Contains(e, "simulated failure"):
				failed++
			}
		}
		started += len(poolLogs(n, "refill started", pool))
		resumed += len(poolLogs(n, "refill resumed", pool))
	}
	if lost == 0 || failed == 0 {
		t.Errorf("the nodes logged %d lost replies and %d failed calls, want some of each (seed %s)", lost, failed, burnSeed)
	}
	if started != len(ups) {
		t.Errorf("%d downloads started (log), %d segments stored", started, len(ups))
	}
	ok := cl.metric("numberd_refill_downloads_total", `outcome="ok"`)
	attemptFailed := cl.metric("numberd_refill_downloads_total", `outcome="attempt_failed"`)
	if int64(ok) != stats.Granted || int64(ok+attemptFailed) != stats.Applies {
		t.Errorf("metrics: %v downloads ok + %v attempts failed; simulator: %d granted in %d calls", ok, attemptFailed, stats.Granted, stats.Applies)
	}
	firstAfter := time.Duration(b.firstOK.Load() - start.UnixNano())
	t.Logf("%v of load: %d answers 200, %d numbers, %.0f numbers/s; first segment after %v; pool_exhausted %d before it (%d with Retry-After), %d after; slowest answer %v",
		elapsed.Round(time.Millisecond), b.ok.Load(), l.Count(), float64(l.Count())/elapsed.Seconds(), firstAfter.Round(time.Millisecond),
		b.exhausted.Load(), b.retryHint.Load(), b.dry.Load(), time.Duration(b.maxWait.Load()).Round(time.Millisecond))
	t.Logf("simulator: %d calls, %d segments granted, %d numbers; pool: %d upstream segments, %d numbers; downloads started %d, resumed %d; calls failed %d, replies lost %d; available %s, effective threshold %d",
		stats.Applies, stats.Granted, stats.Numbers, len(ups), stored, started, resumed, failed, lost, st.Available, st.Refill.EffectiveThreshold)
}

// burnClient allocates from pool every burnEvery, going round the nodes, until
// stop is closed.
func (cl *cluster) burnClient(w int, pool string, l *harness.Ledger, b *burn, stop <-chan struct{}) {
	count := w%burnMaxCount + 1
	idx := w % len(cl.nodes)
	// Spread the clients' first requests over one period.
	select {
	case <-stop:
		return
	case <-time.After(time.Duration(w) * burnEvery / burnClients):
	}
	tick := time.NewTicker(burnEvery)
	defer tick.Stop()
	for {
		node := cl.nodes[idx]
		idx = (idx + 1) % len(cl.nodes)
		sent := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		nums, r, err := cl.c.Allocate(ctx, node.URL(), pool, count)
		cancel()
		took := time.Since(sent)
		for m := b.maxWait.Load(); int64(took) > m && !b.maxWait.CompareAndSwap(m, int64(took)); m = b.maxWait.Load() {
		}
		switch {
		case err != nil:
			if !errors.Is(err, context.Canceled) {
				cl.t.Errorf("client %d: allocate on %s: %v", w, node.Name(), err)
			}
			return
		case r.Status == http.StatusOK:
			b.ok.Add(1)
			b.firstOK.CompareAndSwap(0, time.Now().UnixNano())
			l.Record(node.Name(), nums)
		case r.Status == http.StatusServiceUnavailable && r.Code() == "pool_exhausted":
			if r.Header.Get("Retry-After") != "" {
				b.retryHint.Add(1)
			}
			if first := b.firstOK.Load(); first != 0 && sent.UnixNano() > first {
				if b.dry.Add(1) <= 5 {
					cl.t.Errorf("client %d: pool exhausted on %s at %s, %v after the first segment arrived: %s",
						w, node.Name(), sent.Format("15:04:05.000"), time.Duration(sent.UnixNano()-first).Round(time.Millisecond), r)
				}
			} else {
				b.exhausted.Add(1)
			}
		default:
			cl.t.Errorf("client %d: allocate %d on %s: unexpected answer %s", w, count, node.Name(), r)
			return
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}
