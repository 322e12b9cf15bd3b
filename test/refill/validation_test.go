package refill_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/numberd/numberd/internal/testenv"
	"github.com/numberd/numberd/test/harness"
)

// fakeUpstream speaks the upstream protocol but answers, for each pool, the
// grant the test set: 200 with the ywlsh asked and that start and end, checked by
// nothing. It records the ywlsh of every call.
type fakeUpstream struct {
	*httptest.Server

	mu     sync.Mutex
	grants map[string][2]string // pool → start, end
	calls  map[string][]string  // pool → ywlsh of each call
}

func startFakeUpstream(t *testing.T) *fakeUpstream {
	t.Helper()
	f := &fakeUpstream{grants: map[string][2]string{}, calls: map[string][]string{}}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Pool     string `json:"pool"`
			Quantity int64  `json:"quantity"`
			Ywlsh    string `json:"ywlsh"`
		}
		if r.Method != http.MethodPost || r.URL.Path != "/segments" || json.NewDecoder(r.Body).Decode(&req) != nil {
			http.Error(w, `{"error": "want POST /segments {pool, quantity, ywlsh}"}`, http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		g, ok := f.grants[req.Pool]
		f.calls[req.Pool] = append(f.calls[req.Pool], req.Ywlsh)
		f.mu.Unlock()
		if !ok {
			http.Error(w, `{"error": "no grant for this pool"}`, http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"ywlsh": req.Ywlsh, "start": g[0], "end": g[1]})
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeUpstream) grant(pool, start, end string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.grants[pool] = [2]string{start, end}
}

func (f *fakeUpstream) ywlshs(pool string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls[pool]...)
}

// TestRefillRefusesBadSegments: an upstream that grants a range overlapping what
// the pool has or had, or a malformed one, is refused. The pool's refill state
// turns failed with a last_error saying why, no upstream segment is stored, and
// the pool goes on serving the numbers of its own segment.
func TestRefillRefusesBadSegments(t *testing.T) {
	fake := startFakeUpstream(t)
	cl := startCluster(t, 2, map[string]harness.UpstreamConfig{"fake": {URL: fake.URL, Timeout: 5 * time.Second}})

	type tc struct {
		pool   string
		prefix string // of the pool's own segments
		// exhausted, if set, is a segment of the pool used up before the refill.
		exhausted  [2]int64
		start, end string // the grant
		wantErr    []string
	}
	cases := []tc{
		{pool: "overlap", prefix: "41000", start: number("41000", 50), end: number("41000", 1049), wantErr: []string{"overlaps"}},
		{pool: "identical", prefix: "42000", start: number("42000", 1), end: number("42000", 100), wantErr: []string{"loaded before"}},
		{pool: "overlap-used", prefix: "43000", exhausted: [2]int64{10_001, 10_010}, start: number("43000", 10_005), end: number("43000", 11_004), wantErr: []string{"overlaps"}},
		{pool: "non-digits", prefix: "44000", start: "4400000000000000abcd", end: number("44000", 2000), wantErr: []string{"non-digit"}},
		{pool: "narrow", prefix: "45000", start: number("45000", 1001)[1:], end: number("45000", 2000)[1:], wantErr: []string{"digits"}},
		{pool: "wide", prefix: "46000", start: number("46000", 1001) + "0", end: number("46000", 2000) + "0", wantErr: []string{"digits"}},
		{pool: "reversed", prefix: "47000", start: number("47000", 2000), end: number("47000", 1001), wantErr: []string{"above end"}},
		{pool: "prefix-span", prefix: "48000", start: number("48000", 1001), end: number("49000", 2000), wantErr: []string{"differs in more than"}},
		{pool: "empty", prefix: "49000", start: "", end: "", wantErr: []string{"characters"}},
	}
	ctx := context.Background()
	// Every pool gets its own segments before it names the upstream, so that the
	// refill starts only then.
	for _, c := range cases {
		cl.mustPool(c.pool, "", 200, 1000)
		if c.exhausted[1] != 0 {
			cl.mustLoad(c.pool, number(c.prefix, c.exhausted[0]), number(c.prefix, c.exhausted[1]))
		}
		cl.mustLoad(c.pool, number(c.prefix, 1), number(c.prefix, 100))
		if c.exhausted[1] != 0 {
			cl.mustAllocate(cl.nodes[0], c.pool, int(c.exhausted[1]-c.exhausted[0]+1))
		}
		fake.grant(c.pool, c.start, c.end)
	}
	for _, c := range cases {
		up := "fake"
		if _, err := cl.c.PutPoolSpec(ctx, cl.nodes[1].URL(), c.pool, harness.PoolSpec{Upstream: &up}); err != nil {
			t.Fatal(err)
		}
	}

	for _, c := range cases {
		t.Run(c.pool, func(t *testing.T) {
			var st harness.PoolStatus
			testenv.Eventually(t, 15*time.Second, "refill of "+c.pool+" fails", func() bool {
				st = cl.status(c.pool)
				return st.Refill.State == "failed"
			})
			for _, want := range c.wantErr {
				if !strings.Contains(st.Refill.LastError, want) {
					t.Errorf("last_error = %q, want it to say %q", st.Refill.LastError, want)
				}
			}
			asked := fake.ywlshs(c.pool)
			if len(asked) == 0 || st.Refill.Ywlsh != asked[0] {
				t.Errorf("refill ywlsh = %q, the upstream was asked for %q", st.Refill.Ywlsh, asked)
			}
			segs := cl.segments(c.pool)
			if ups := bySource(segs, "upstream"); len(ups) != 0 {
				t.Errorf("upstream segments stored: %s", segmentsOf(ups))
			}
			checkUpstreamSegments(t, segs)
			// The pool serves its own numbers, on every node.
			before := st.AvailableN()
			for _, n := range cl.nodes {
				for _, num := range cl.mustAllocate(n, c.pool, 3) {
					if num < number(c.prefix, 1) || num > number(c.prefix, 100) {
						t.Errorf("%s handed out %s, outside the pool's own segment", n.Name(), num)
					}
				}
			}
			if after := cl.status(c.pool); after.AvailableN() != before-int64(3*len(cl.nodes)) || after.Refill.State != "failed" {
				t.Errorf("after allocating: available %s (before %d), refill %+v", after.Available, before, after.Refill)
			}
			t.Logf("grant %q..%q refused: last_error %q; upstream calls %d (ywlsh %v)", c.start, c.end, st.Refill.LastError, len(asked), asked)
		})
	}
	if n := cl.metric("numberd_refill_downloads_total", `outcome="failed"`); n < float64(len(cases)) {
		t.Errorf("numberd_refill_downloads_total{outcome=\"failed\"} = %v over the nodes, want ≥ %d", n, len(cases))
	}

	// After a failure the next refill is a new download, under a new ywlsh: asked
	// for by hand here, since an automatic one waits a while after a refusal.
	c := cases[0]
	failed := cl.status(c.pool).Refill.Ywlsh
	fake.grant(c.pool, number(c.prefix, 1001), number(c.prefix, 2000))
	if _, r, err := cl.c.StartRefill(ctx, cl.nodes[0].URL(), c.pool); err != nil || r.Status != http.StatusAccepted {
		t.Fatalf("POST refill of %s after a failure: %v, %v", c.pool, r, err)
	}
	ups := cl.storedFor(c.pool, 10*time.Second)
	if len(ups) != 1 || ups[0].Ywlsh == failed || ups[0].Start != number(c.prefix, 1001) {
		t.Errorf("after the failed ywlsh %s, a good grant stored %s; want one segment from %s under a new ywlsh", failed, segmentsOf(ups), number(c.prefix, 1001))
	}
	if st := cl.status(c.pool); st.Refill.State != "idle" || st.Refill.LastError != "" {
		t.Errorf("refill after a good grant: %+v, want idle without last_error", st.Refill)
	}
}
