package refill_test

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/numberd/numberd/internal/testenv"
	"github.com/numberd/numberd/test/harness"
)

// TestRefillTrigger: POST /v1/pools/{pool}/refill answers 202 with the refill
// object, state requesting, and starts a download although the pool is above its
// threshold; more POSTs, to every node, while that download is under way start no
// second one: the simulator is called once and grants once.
func TestRefillTrigger(t *testing.T) {
	const latency = 1500 * time.Millisecond
	sim := startSim(t, "--first", number("51000", 100_001), "--latency", latency.String())
	cl := startCluster(t, 3, simUpstream(sim))
	ctx := context.Background()
	const pool = "trigger"
	// The pool has its numbers before it names its upstream: no refill is due.
	cl.mustPool(pool, "", 200, 1000)
	cl.mustLoad(pool, number("51000", 1), number("51000", 10_000))
	up := upstreamName
	if _, err := cl.c.PutPoolSpec(ctx, cl.nodes[0].URL(), pool, harness.PoolSpec{Upstream: &up}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * refillScan)
	if st := sim.MustStats(t); st.Applies != 0 {
		t.Fatalf("the simulator was called %d times for a pool far above its threshold", st.Applies)
	}
	if st := cl.status(pool); st.Refill.State != "idle" {
		t.Fatalf("refill before the POST: %+v, want idle", st.Refill)
	}

	first, r, err := cl.c.StartRefill(ctx, cl.nodes[0].URL(), pool)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != http.StatusAccepted || r.ContentType() != "application/json" {
		t.Fatalf("POST refill: %s (%s), want 202 application/json", r, r.ContentType())
	}
	for _, field := range []string{"state", "ywlsh", "last_error", "updated_at", "effective_threshold"} {
		if _, ok := r.JSON[field]; !ok {
			t.Errorf("POST refill answer %s has no %q", r.Body, field)
		}
	}
	if first.State != "requesting" {
		t.Errorf("POST refill answered state %q, want requesting", first.State)
	}
	a, ywlsh := holder(t, cl.nodes, pool, 5*time.Second)
	if first.Ywlsh != "" && first.Ywlsh != ywlsh {
		t.Errorf("POST refill answered ywlsh %q, %s started %q", first.Ywlsh, a.Name(), ywlsh)
	}
	// While the download waits on the simulator, ask every node again.
	for i, n := range slices.Concat(cl.nodes, cl.nodes) {
		again, r, err := cl.c.StartRefill(ctx, n.URL(), pool)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != http.StatusAccepted || again.State != "requesting" {
			t.Errorf("POST refill #%d on %s while one is under way: %s, want 202 requesting", i+2, n.Name(), r)
		}
		if again.Ywlsh != ywlsh {
			t.Errorf("POST refill #%d on %s reported ywlsh %q, want the download under way, %q", i+2, n.Name(), again.Ywlsh, ywlsh)
		}
	}
	if st := sim.MustStats(t); st.Granted != 0 {
		t.Fatalf("the download ended within %v, before the POSTs that should find it under way", latency)
	}

	ups := cl.storedFor(pool, 10*time.Second)
	time.Sleep(5 * refillScan)
	ups = bySource(cl.segments(pool), "upstream")
	stats := sim.MustStats(t)
	if stats.Applies != 1 || stats.Granted != 1 {
		t.Errorf("simulator: %d calls, %d granted; want 1 call and 1 segment for one refill", stats.Applies, stats.Granted)
	}
	if len(ups) != 1 || ups[0].Ywlsh != ywlsh || ups[0].SizeN() != 1000 {
		t.Errorf("upstream segments: %s; want one of 1000 numbers with ywlsh %s", segmentsOf(ups), ywlsh)
	}
	var started int
	for _, n := range cl.nodes {
		started += len(poolLogs(n, "refill started", pool))
	}
	if started != 1 {
		t.Errorf("%d nodes' logs say \"refill started\", want 1", started)
	}
	after := cl.status(pool)
	if after.Refill.State != "idle" || after.Refill.LastError != "" || after.AvailableN() != 11_000 {
		t.Errorf("after the refill: available %s, refill %+v; want 11000, idle", after.Available, after.Refill)
	}

	// A pool without an upstream cannot be refilled.
	cl.mustPool("no-upstream", "", 50, 0)
	if _, r, err := cl.c.StartRefill(ctx, cl.nodes[1].URL(), "no-upstream"); err != nil || r.Status != http.StatusBadRequest || r.Code() != "invalid_argument" {
		t.Errorf("POST refill of a pool without upstream: %v, %v; want 400 invalid_argument", r, err)
	}
	t.Logf("POST refill on %s answered %+v; %s downloaded ywlsh %s; 6 more POSTs on every node during the download; simulator: %d calls, %d granted",
		cl.nodes[0].Name(), first, a.Name(), ywlsh, stats.Applies, stats.Granted)
}

// TestRefillRetryAfter: an exhausted pool whose refill is under way answers
// pool_exhausted with Retry-After; one without an upstream answers it without.
// Once the segment arrives, the same request is served.
func TestRefillRetryAfter(t *testing.T) {
	const latency = 3 * time.Second
	sim := startSim(t, "--first", number("52000", 1), "--latency", latency.String())
	cl := startCluster(t, 2, simUpstream(sim))
	const pool = "dry"
	cl.mustPool("dry-manual", "", 50, 0)
	cl.mustPool(pool, upstreamName, 200, 1000)
	testenv.Eventually(t, 5*time.Second, "the refill of the empty pool starts", func() bool {
		return cl.status(pool).Refill.State == "requesting"
	})
	for _, n := range cl.nodes {
		_, r := cl.allocate(n, pool, 1)
		if r.Status != http.StatusServiceUnavailable || r.Code() != "pool_exhausted" {
			t.Errorf("allocate from the empty pool on %s: %s, want 503 pool_exhausted", n.Name(), r)
			continue
		}
		ra := r.Header.Get("Retry-After")
		if secs, err := strconv.Atoi(ra); err != nil || secs < 1 {
			t.Errorf("pool_exhausted on %s during a refill has Retry-After %q, want whole seconds ≥ 1", n.Name(), ra)
		}
		if r.ContentType() != "application/problem+json" {
			t.Errorf("pool_exhausted on %s is %s, want application/problem+json", n.Name(), r.ContentType())
		}
	}
	if st := sim.MustStats(t); st.Granted != 0 {
		t.Fatalf("the simulator granted within its latency of %v: the pool was not empty during a refill", latency)
	}
	_, r := cl.allocate(cl.nodes[0], "dry-manual", 1)
	if r.Status != http.StatusServiceUnavailable || r.Code() != "pool_exhausted" || r.Header.Get("Retry-After") != "" {
		t.Errorf("allocate from an empty pool without upstream: %s, Retry-After %q; want 503 pool_exhausted without Retry-After", r, r.Header.Get("Retry-After"))
	}

	ups := cl.storedFor(pool, 15*time.Second)
	for _, n := range cl.nodes {
		for _, num := range cl.mustAllocate(n, pool, 2) {
			if num < ups[0].Start || num > ups[0].End {
				t.Errorf("%s handed out %s, outside the refilled segment %s..%s", n.Name(), num, ups[0].Start, ups[0].End)
			}
		}
	}
}
