package distributed_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/numberd/numberd/test/harness"
)

// TestHoleRedisPausedPastTimeout (finding 3): Redis is stopped (SIGSTOP) longer
// than the request timeout while two nodes serve a load, then continued. The
// allocate calls the nodes gave up on run when Redis resumes and consume numbers:
// afterwards every number below the pool's cursor must have reached a caller or lie
// in a gap (reason abandoned), and no 503 answered during the pause may claim that
// nothing was consumed: its outcome was unknown.
func TestHoleRedisPausedPastTimeout(t *testing.T) {
	ctx := context.Background()
	r := newHoleRig(t, harness.StartRedis(t, "redis"), "pz", holeTimeout)
	ld := r.load(t)
	idle := startHoleNode(t, "node3", "redis://"+r.rds.Addr()+"/0", r.dsn, holeTimeout)
	mustAllocate(t, r.c, r.l, idle, "pz", 1)

	must(t, r.rds.Pause())
	paused := time.Now()
	var (
		mu     sync.Mutex
		probes []*harness.Response
		wg     sync.WaitGroup
	)
	defer wg.Wait()
	// A plain probe on each loaded node, and a keyed one on a third node without
	// load, so that it is sent at once too, with a key not used again until the
	// end: a caller that gave up. What a keyed call took while its answer was
	// lost is abandoned like any other, not kept for a retry that may never come.
	const probeKey = "pz-probe"
	targets := append(slices.Clone(r.nodes), idle)
	for _, n := range targets {
		keyed := n == idle
		wg.Go(func() {
			var header []string
			if keyed {
				header = []string{"Idempotency-Key", probeKey}
			}
			resp, err := r.c.Do(ctx, http.MethodPost, n.URL()+"/v1/pools/pz/numbers", map[string]int{"count": 3}, header...)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				resp = &harness.Response{Body: []byte(err.Error())}
			} else if resp.Status == http.StatusOK {
				r.l.Record(n.Name(), resp.Strings("numbers"))
			}
			probes = append(probes, resp)
		})
	}
	// Resumed once the probes were answered, and no sooner than four request
	// timeouts, past the engine's own bound on a Redis call (3 s when this was
	// written): the calls sent meanwhile were given up on, their replies lost.
	eventually(t, 30*time.Second, "the probes' answers during the pause", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(probes) == len(targets) && time.Since(paused) > 4*holeTimeout
	})
	must(t, r.rds.Resume())
	pause := time.Since(paused)
	resumedAt := r.l.Count()
	ld.waitFor(resumedAt+1000, 30*time.Second, "1000 numbers after the resume")
	ld.Stop()

	for _, resp := range probes {
		switch {
		case resp.Status == http.StatusOK:
		case resp.Status != http.StatusServiceUnavailable:
			t.Errorf("allocation during the pause: %s, want 200 or 503", resp)
		case strings.Contains(fmt.Sprint(resp.JSON["detail"]), "nothing was consumed"):
			t.Errorf("503 during the pause claims %q: the call's outcome was unknown", resp.JSON["detail"])
		default:
			t.Logf("503 during the pause: %q", resp.JSON["detail"])
		}
	}

	// Every number below the cursor reached a caller or lies in a gap; the gaps
	// of abandoned calls may be recorded a moment after Redis answers again.
	var missing []string
	var cursor string
	var gaps []harness.Gap
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := r.c.Pool(ctx, r.nodes[0].URL(), "pz")
		must(t, err)
		if st.ActiveSegment == nil {
			t.Fatalf("pool pz has no active segment: %+v", st)
		}
		cursor, gaps, missing = st.ActiveSegment.Next, r.gaps(t), nil
		for v := r.seg.lo; r.seg.number(v) < cursor; v++ {
			if n := r.seg.number(v); !r.l.Has(n) && !inGap(gaps, n) {
				missing = append(missing, n)
			}
		}
		if int64(len(missing)) <= ld.inDoubt.Load() || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if int64(len(missing)) > ld.inDoubt.Load() {
		t.Errorf("%d numbers below the cursor %s reached no caller and lie in no gap (first %s, last %s); %d in doubt",
			len(missing), cursor, missing[0], missing[len(missing)-1], ld.inDoubt.Load())
	}
	sizes, gapped := gapSizes(gaps)
	t.Logf("paused %v: %d numbers handed out (%d before the resume); 503 unavailable %d; gaps %v (total %d); cursor %s",
		pause.Round(time.Millisecond), r.l.Count(), resumedAt, ld.unavailable.Load(), sizes, gapped, cursor)

	// The probe's key, used again now, answers numbers no one else got and no gap
	// holds, and the same numbers twice.
	var first []string
	for range 2 {
		resp, err := r.c.Do(ctx, http.MethodPost, idle.URL()+"/v1/pools/pz/numbers", map[string]int{"count": 3}, "Idempotency-Key", probeKey)
		must(t, err)
		if resp.Status != http.StatusOK {
			t.Fatalf("retry of key %s: %s", probeKey, resp)
		}
		nums := resp.Strings("numbers")
		if first == nil {
			first = nums
			r.l.Record(idle.Name(), nums)
		} else if !slices.Equal(nums, first) {
			t.Errorf("key %s answered %v, then %v", probeKey, first, nums)
		}
	}
	gaps = r.gaps(t)
	for _, num := range first {
		if inGap(gaps, num) {
			t.Errorf("key %s was answered %s, which lies in a gap", probeKey, num)
		}
	}
	if d := r.l.Duplicates(); d > 0 {
		t.Errorf("%d numbers handed out twice", d)
	}
}
