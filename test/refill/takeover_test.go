package refill_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/numberd/numberd/internal/testenv"
	"github.com/numberd/numberd/test/harness"
)

// detachedProxy forwards every request to target and finishes the call even when
// its caller hangs up, as a call that reached the tax platform does: the platform
// grants whether or not the caller is still there to read the answer. (The
// simulator itself grants nothing to a caller that hung up during its latency.)
type detachedProxy struct {
	*httptest.Server
	calls atomic.Int64
}

func startDetachedProxy(t *testing.T, target string) *detachedProxy {
	t.Helper()
	p := &detachedProxy{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		p.calls.Add(1)
		req, err := http.NewRequestWithContext(context.WithoutCancel(r.Context()), r.Method, target+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(p.Close)
	return p
}

// others is nodes without n.
func others(nodes []*harness.Node, n *harness.Node) []*harness.Node {
	var out []*harness.Node
	for _, o := range nodes {
		if o != n {
			out = append(out, o)
		}
	}
	return out
}

// resumedBy waits until one of nodes logs "refill resumed" for pool and returns
// that node and the record, failing t after timeout.
func resumedBy(t *testing.T, nodes []*harness.Node, pool string, timeout time.Duration) (*harness.Node, map[string]any) {
	t.Helper()
	var node *harness.Node
	var rec map[string]any
	testenv.Eventually(t, timeout, "another node logs \"refill resumed\" for "+pool, func() bool {
		for _, n := range nodes {
			if recs := poolLogs(n, "refill resumed", pool); len(recs) > 0 {
				node, rec = n, recs[0]
				return true
			}
		}
		return false
	})
	return node, rec
}

// storedFor waits until pool has a segment from upstream and its refill is idle,
// and returns the pool's upstream segments.
func (cl *cluster) storedFor(pool string, timeout time.Duration) []harness.Segment {
	cl.t.Helper()
	var ups []harness.Segment
	testenv.Eventually(cl.t, timeout, "an upstream segment is stored in "+pool, func() bool {
		ups = bySource(cl.segments(pool), "upstream")
		return len(ups) > 0 && cl.status(pool).Refill.State == "idle"
	})
	return ups
}

// logTime is a log record's time.
func logTime(t *testing.T, rec map[string]any) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, str(rec, "time"))
	if err != nil {
		t.Fatalf("log record without a time: %v", rec)
	}
	return at
}

// TestRefillHolderKilled: the node holding a pool's refill lock is killed with -9
// while its call to the upstream is in flight. The call still reaches the
// upstream, which grants the segment. Another node must wait out the lease, then
// resume the same ywlsh, so that the upstream answers the same segment again:
// one segment granted and stored for one need.
func TestRefillHolderKilled(t *testing.T) {
	const latency = 3 * time.Second
	sim := startSim(t, "--first", number("31000", 1), "--latency", latency.String())
	proxy := startDetachedProxy(t, sim.URL())
	cl := startCluster(t, 3, map[string]harness.UpstreamConfig{upstreamName: {URL: proxy.URL, Timeout: 30 * time.Second}})
	const pool = "killed"
	cl.mustPool(pool, upstreamName, 200, 1000)

	a, ywlsh := holder(t, cl.nodes, pool, 10*time.Second)
	testenv.Eventually(t, 5*time.Second, "the holder's call reaches the upstream", func() bool { return proxy.calls.Load() >= 1 })
	if st := cl.status(pool); st.Refill.State != "requesting" || st.Refill.Ywlsh != ywlsh {
		t.Errorf("status while %s downloads: refill %+v, want requesting with ywlsh %s", a.Name(), st.Refill, ywlsh)
	}
	a.Kill9()
	killedAt := time.Now()
	if g := sim.MustStats(t).Granted; g != 0 {
		t.Fatalf("the simulator granted %d segments before its latency of %v ran out: the kill was not mid-download", g, latency)
	}

	b, rec := resumedBy(t, others(cl.nodes, a), pool, 15*time.Second)
	if got := str(rec, "ywlsh"); got != ywlsh {
		t.Errorf("%s resumed ywlsh %q, want the killed holder's %q", b.Name(), got, ywlsh)
	}
	// The lease was renewed at most a third of it before the kill.
	if after := logTime(t, rec).Sub(killedAt); after < refillLease*2/3-100*time.Millisecond {
		t.Errorf("%s resumed %v after the kill, before the holder's lease of %v could run out", b.Name(), after, refillLease)
	}
	ups := cl.storedFor(pool, 15*time.Second)
	if len(ups) != 1 || ups[0].Ywlsh != ywlsh {
		t.Fatalf("upstream segments after the takeover: %s; want one, with ywlsh %s", segmentsOf(ups), ywlsh)
	}
	stats := sim.MustStats(t)
	if stats.Granted != 1 {
		t.Errorf("the simulator granted %d segments for one need, want 1", stats.Granted)
	}
	if stats.Applies < 2 {
		t.Errorf("the simulator saw %d calls, want the killed holder's and the resumed one's", stats.Applies)
	}
	if n := len(poolLogs(b, "refill stored a segment", pool)); n != 1 {
		t.Errorf("%s logged %d stored segments, want 1", b.Name(), n)
	}

	// The numbers come from that segment, on every node, and the killed node,
	// back, starts no second download.
	a.Restart()
	for _, n := range cl.nodes {
		for _, num := range cl.mustAllocate(n, pool, 5) {
			if num < ups[0].Start || num > ups[0].End {
				t.Errorf("%s handed out %s, outside the stored segment %s..%s", n.Name(), num, ups[0].Start, ups[0].End)
			}
		}
	}
	time.Sleep(5 * refillScan)
	if got := sim.MustStats(t); got.Granted != 1 {
		t.Errorf("after %s came back the simulator has granted %d segments, want 1", a.Name(), got.Granted)
	}
	if n := len(bySource(cl.segments(pool), "upstream")); n != 1 {
		t.Errorf("after %s came back the pool has %d upstream segments, want 1", a.Name(), n)
	}
	t.Logf("%s held the lock (ywlsh %s) and was killed; %s resumed it %v later; simulator: %d calls, %d granted; segment %s..%s",
		a.Name(), ywlsh, b.Name(), logTime(t, rec).Sub(killedAt).Round(time.Millisecond), stats.Applies, stats.Granted, ups[0].Start, ups[0].End)
}

// TestRefillHolderPaused: the holder of a pool's refill lock is paused with
// SIGSTOP mid-download, past its lease. Another node takes over the same ywlsh and
// stores the segment. Resumed, the paused node's call returns the same grant, and
// its late write must be refused by fencing: a log line and
// numberd_refill_fenced_total ≥ 1, with still exactly one segment for the ywlsh.
func TestRefillHolderPaused(t *testing.T) {
	const latency = 4 * time.Second
	sim := startSim(t, "--first", number("32000", 1), "--latency", latency.String())
	cl := startCluster(t, 3, simUpstream(sim))
	const pool = "paused"
	cl.mustPool(pool, upstreamName, 200, 1000)

	a, ywlsh := holder(t, cl.nodes, pool, 10*time.Second)
	testenv.Eventually(t, 5*time.Second, "the holder's call reaches the upstream", func() bool { return sim.MustStats(t).Applies >= 1 })
	a.Pause()
	pausedAt := time.Now()
	paused := true
	defer func() {
		if paused {
			a.Resume()
		}
	}()

	b, rec := resumedBy(t, others(cl.nodes, a), pool, 15*time.Second)
	if got := str(rec, "ywlsh"); got != ywlsh {
		t.Errorf("%s resumed ywlsh %q, want the paused holder's %q", b.Name(), got, ywlsh)
	}
	ups := cl.storedFor(pool, 20*time.Second)
	if len(ups) != 1 || ups[0].Ywlsh != ywlsh {
		t.Fatalf("upstream segments after the takeover: %s; want one, with ywlsh %s", segmentsOf(ups), ywlsh)
	}
	// By now the upstream has answered the paused node's call too: it waits in
	// its socket.
	testenv.Eventually(t, 2*latency, "the simulator answered both calls", func() bool { return sim.MustStats(t).Applies >= 2 })
	time.Sleep(200 * time.Millisecond)
	pausedFor := time.Since(pausedAt)
	a.Resume()
	paused = false

	const refused = "refill write refused: stale fencing token, another node holds the refill lock"
	testenv.Eventually(t, 10*time.Second, a.Name()+" logs that its write was refused", func() bool {
		return len(poolLogs(a, refused, pool)) > 0
	})
	if n := nodeMetric(t, cl.c, a, "numberd_refill_fenced_total"); n < 1 {
		t.Errorf("%s numberd_refill_fenced_total = %v, want ≥ 1", a.Name(), n)
	}
	for _, n := range others(cl.nodes, a) {
		if len(poolLogs(n, refused, pool)) > 0 {
			t.Errorf("%s, which was never paused, logged %q", n.Name(), refused)
		}
	}
	if n := len(poolLogs(a, "refill stored a segment", pool)); n != 0 {
		t.Errorf("the paused node logged %d stored segments after it lost the lock", n)
	}

	time.Sleep(5 * refillScan)
	segs := cl.segments(pool)
	ups = bySource(segs, "upstream")
	if len(ups) != 1 || ups[0].Ywlsh != ywlsh {
		t.Errorf("upstream segments after the paused node resumed: %s; want one, with ywlsh %s", segmentsOf(ups), ywlsh)
	}
	checkUpstreamSegments(t, segs)
	stats := sim.MustStats(t)
	if stats.Granted != 1 {
		t.Errorf("the simulator granted %d segments for one need, want 1", stats.Granted)
	}
	if st := cl.status(pool); st.Refill.State != "idle" {
		t.Errorf("refill after the paused node resumed: %+v, want idle", st.Refill)
	}
	for _, num := range cl.mustAllocate(a, pool, 5) {
		if num < ups[0].Start || num > ups[0].End {
			t.Errorf("%s handed out %s, outside the stored segment %s..%s", a.Name(), num, ups[0].Start, ups[0].End)
		}
	}
	var why []string
	for _, rec := range poolLogs(a, refused, pool) {
		why = append(why, str(rec, "err"))
	}
	t.Logf("%s held the lock (ywlsh %s), paused for %v; %s resumed the ywlsh and stored %s..%s; %s's writes refused: %q; simulator: %d calls, %d granted",
		a.Name(), ywlsh, pausedFor.Round(time.Millisecond), b.Name(), ups[0].Start, ups[0].End, a.Name(), why, stats.Applies, stats.Granted)
}
