package distributed_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/numberd/numberd/test/harness"
)

// TestHoleLostSegKey (finding 4): one of a pool's keys is lost (DEL
// numberd:{p}:seg, what the eviction of one key does) while its meta survives. The
// next request must succeed, or at worst answer 503 within the request timeout
// and the one after succeed: the pool heals within one request timeout, with a
// bounded number of Redis calls.
func TestHoleLostSegKey(t *testing.T) {
	ctx := context.Background()
	r := newHoleRig(t, harness.StartRedis(t, "redis"), "lk", holeTimeout)
	r.allocate(t, 20, 5)
	redisCalls := func() float64 {
		var sum float64
		for _, n := range r.nodes {
			m, err := r.c.Metrics(ctx, n.URL())
			must(t, err)
			sum += m.Sum("numberd_redis_calls_total")
		}
		return sum
	}
	callsBefore := redisCalls()
	evalBefore, _ := r.rds.CommandCalls(ctx, "evalsha")
	if n, err := r.rds.DelKeys(ctx, "numberd:{lk}:seg"); err != nil || n != 1 {
		t.Fatalf("DEL numberd:{lk}:seg: %d, %v", n, err)
	}

	// A 503 may take the request timeout and a little: 10 %, and the race
	// detector's slack.
	bound := holeTimeout + holeTimeout/10 + 200*time.Millisecond
	var took []time.Duration
	healed := false
	for attempt := range 2 {
		nums, resp, d := allocateTimed(t, r.c, r.nodes[0], "lk", 5)
		took = append(took, d)
		if resp.Status == http.StatusOK {
			r.l.Record(r.nodes[0].Name(), nums)
			healed = true
			break
		}
		if attempt == 1 {
			t.Errorf("allocation after the lost key and a first 503: %s after %v, want 200", resp, d)
			break
		}
		if resp.Status != http.StatusServiceUnavailable {
			t.Errorf("allocation after the lost key: %s, want 200 or at worst 503", resp)
		}
		if d > bound {
			t.Errorf("allocation after the lost key answered %d after %v, want 200, or a 503 within %v", resp.Status, d, bound)
		}
	}
	calls := redisCalls() - callsBefore
	evalAfter, _ := r.rds.CommandCalls(ctx, "evalsha")
	if calls >= 50 {
		t.Errorf("the requests after the lost key made %.0f Redis script calls, want fewer than 50", calls)
	}
	if healed {
		// The other node heals as well, and both go on.
		for i := range 10 {
			node := r.nodes[(i+1)%2]
			if nums, resp, d := allocateTimed(t, r.c, node, "lk", 5); resp.Status != http.StatusOK || d > bound {
				t.Errorf("allocation %d after healing on %s: %s after %v", i+1, node.Name(), resp, d)
			} else {
				r.l.Record(node.Name(), nums)
			}
		}
	}
	t.Logf("lost seg key: answers took %v; %.0f script calls counted by the nodes, %d EVALSHA run by Redis", took, calls, evalAfter-evalBefore)
	logReseeds(t, r.nodes)
}

// TestHoleIdempotencyAcrossRedisLoss (finding 5): a key's numbers are replayed for
// 24 h in both modes, so after Redis loses everything (FLUSHALL, or a restart
// without persistence) a replay of the key on any node answers the same numbers,
// marked Idempotent-Replayed, and takes none.
func TestHoleIdempotencyAcrossRedisLoss(t *testing.T) {
	ctx := context.Background()
	r := newHoleRig(t, harness.StartRedis(t, "redis"), "ik", 0)
	allocateKey := func(node *harness.Node, key string) (*harness.Response, []string) {
		t.Helper()
		resp, err := r.c.Do(ctx, http.MethodPost, node.URL()+"/v1/pools/ik/numbers", map[string]int{"count": 3}, "Idempotency-Key", key)
		must(t, err)
		if resp.Status != http.StatusOK {
			t.Fatalf("allocate with key %s on %s: %s", key, node.Name(), resp)
		}
		return resp, resp.Strings("numbers")
	}
	checkReplay := func(node *harness.Node, key string, want []string, what string) {
		t.Helper()
		resp, got := allocateKey(node, key)
		if strings.Join(got, ",") != strings.Join(want, ",") || resp.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("replay of key %s on %s after %s: %v (Idempotent-Replayed %q), want %v (true)",
				key, node.Name(), what, got, resp.Header.Get("Idempotent-Replayed"), want)
			r.l.Record(node.Name()+" replay", got)
		}
	}
	keyed := map[string][]string{}
	for i, key := range []string{"invoice-1", "invoice-2"} {
		_, nums := allocateKey(r.nodes[i], key)
		r.l.Record(r.nodes[i].Name(), nums)
		keyed[key] = nums
		mustAllocate(t, r.c, r.l, r.nodes[i], "ik", 5)
	}
	checkReplay(r.nodes[1], "invoice-1", keyed["invoice-1"], "nothing")

	must(t, r.rds.FlushAll(ctx))
	checkReplay(r.nodes[0], "invoice-1", keyed["invoice-1"], "FLUSHALL")
	checkReplay(r.nodes[1], "invoice-2", keyed["invoice-2"], "FLUSHALL")

	_, nums := allocateKey(r.nodes[0], "invoice-3")
	r.l.Record(r.nodes[0].Name(), nums)
	keyed["invoice-3"] = nums
	r.rds.Restart()
	for i, key := range []string{"invoice-1", "invoice-2", "invoice-3"} {
		checkReplay(r.nodes[i%2], key, keyed[key], "a restart of Redis without persistence")
	}
	mustAllocate(t, r.c, r.l, r.nodes[0], "ik", 5)
}
