// Tests of allocate calls whose answers were lost and whose own traces in Redis
// are lost in turn: the memo with the pool's state, the entry of unsettled work
// alone, or every trace of the node but its memo.

package distributed_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/numberd/numberd/test/harness"
)

// orphanRig is two nodes on one Redis and one database: node1 reaches both
// through proxies of its own, node2 directly.
type orphanRig struct {
	rds        *harness.Redis
	rpx, mpx   *harness.Proxy
	n1, n2     *harness.Node
	c          *harness.Client
	seg        span
	l          *harness.Ledger
	pool       string
	dsn        string // the database's, without node1's proxy
	aliveNodes []*harness.Node
}

func newOrphanRig(t *testing.T, pool string) *orphanRig {
	t.Helper()
	r := &orphanRig{rds: harness.StartRedis(t, "redis"), pool: pool}
	r.rpx = harness.StartProxy(t, r.rds.Addr())
	dsn := mysqlDSN(t)
	var dsn1 string
	r.mpx, dsn1 = proxiedDSN(t, dsn)
	r.dsn = dsn
	r.n1 = startHoleNode(t, "node1", "redis://"+r.rpx.Addr()+"/0", dsn1, holeTimeout)
	r.n2 = startHoleNode(t, "node2", "redis://"+r.rds.Addr()+"/0", dsn, holeTimeout)
	r.aliveNodes = []*harness.Node{r.n1, r.n2}
	r.c, r.seg, r.l = newPoolRun(t, r.n1, pool)
	for range 3 {
		mustAllocate(t, r.c, r.l, r.n1, pool, 5)
		mustAllocate(t, r.c, r.l, r.n2, pool, 5)
	}
	return r
}

// lose sends an allocation of count to node1 that must not answer 200.
func (r *orphanRig) lose(t *testing.T, count int) {
	t.Helper()
	nums, resp, err := r.c.Allocate(context.Background(), r.n1.URL(), r.pool, count)
	must(t, err)
	if resp.Status == http.StatusOK {
		t.Fatalf("allocate with node1's Redis replies dropped answered %v", nums)
	}
}

// checkAccounted fails t for numbers below the cursor that reached no caller and
// lie in no gap, waiting long enough for an orphan sweep of node2 (entries older
// than 30 s, a sweep every 10 s).
func (r *orphanRig) checkAccounted(t *testing.T) {
	t.Helper()
	for range 3 {
		mustAllocate(t, r.c, r.l, r.n2, r.pool, 5)
	}
	missing, gaps := unaccounted(t, r.c, []*harness.Node{r.n2}, r.n2, r.pool, []span{r.seg}, r.l, 60*time.Second)
	if len(missing) > 0 {
		t.Errorf("%d numbers below the cursor reached no caller and lie in no gap: %v", len(missing), missing)
	}
	sizes, _ := gapSizes(gaps)
	t.Logf("%d numbers handed out; gaps %v; node2 logged %d sweeps that settled work", r.l.Count(), sizes,
		len(r.n2.LogsMatching("settled work other nodes left unsettled")))
}

// TestLostAnswerOfANodeCutOffFromRedisAndTheStore: node1 loses both its routes,
// to MySQL and to Redis (whose replies it no longer gets, while its commands
// still arrive), answers an allocation 503 whose call ran in Redis, and dies
// (kill -9) before either route comes back. Its resolver could register the call
// nowhere: the numbers it took must still end up in a gap once node2 is alone.
func TestLostAnswerOfANodeCutOffFromRedisAndTheStore(t *testing.T) {
	r := newOrphanRig(t, "oc")
	r.mpx.Cut()
	r.rpx.DropReplies()
	r.lose(t, 7)
	time.Sleep(3 * time.Second) // node1's resolver tries to register and settle, and fails
	r.n1.Kill9()
	r.rpx.KeepReplies()
	r.mpx.Restore()
	r.checkAccounted(t)
}

// TestLostAnswerWhoseRegistryEntryAloneIsLost: node1's allocate call runs in
// Redis and its reply is lost; node1's resolver registers the call in the pool's
// hash numberd:{pool}:unsettled once Redis answers again, but cannot settle it
// (its store is cut). node1 dies, and the hash alone is lost (evicted, deleted:
// it is a key like any other). The memo of the call is still in Redis: its
// numbers must still end up in a gap.
func TestLostAnswerWhoseRegistryEntryAloneIsLost(t *testing.T) {
	ctx := context.Background()
	r := newOrphanRig(t, "oh")
	r.mpx.Cut()
	r.rpx.DropReplies()
	r.lose(t, 7)
	time.Sleep(1500 * time.Millisecond)
	r.rpx.KeepReplies()
	hash := "numberd:{oh}:unsettled"
	eventually(t, 10*time.Second, "node1's entry in "+hash, func() bool {
		n, err := r.rds.Client().HLen(ctx, hash).Result()
		return err == nil && n > 0
	})
	r.n1.Kill9()
	n, err := r.rds.DelKeys(ctx, hash)
	must(t, err)
	t.Logf("deleted %d hash; memos left in Redis: %v", n, memoFields(t, r.rds, "oh"))
	r.mpx.Restore()
	r.checkAccounted(t)
}

// TestOrphanSettledWhileItsOwnerIsPaused: node1 loses the replies of a keyed
// and a plain allocation and is paused (SIGSTOP) for 45 s with the calls
// registered but unsettled; node2 sweeps and settles them; the key is retried on
// node2 meanwhile; then node1 resumes and settles the same calls again. The
// key's answers must agree, and its numbers lie in no gap.
func TestOrphanSettledWhileItsOwnerIsPaused(t *testing.T) {
	ctx := context.Background()
	r := newOrphanRig(t, "op")
	keyed := func(n *harness.Node) *harness.Response {
		resp, err := r.c.Do(ctx, http.MethodPost, n.URL()+"/v1/pools/op/numbers", map[string]int{"count": 3}, "Idempotency-Key", "op-key")
		must(t, err)
		return resp
	}
	r.rpx.DropReplies()
	if resp := keyed(r.n1); resp.Status == http.StatusOK {
		t.Fatalf("keyed allocation with node1's replies dropped: %s", resp)
	}
	r.lose(t, 4)
	time.Sleep(2 * time.Second) // node1's resolver registers both
	r.n1.Pause()
	r.rpx.KeepReplies()
	var first []string
	eventually(t, 70*time.Second, "node2's sweep of node1's work, and the key answered on node2", func() bool {
		if len(r.n2.LogsMatching("settled work other nodes left unsettled")) == 0 {
			return false
		}
		resp := keyed(r.n2)
		if resp.Status != http.StatusOK {
			return false
		}
		first = resp.Strings("numbers")
		r.l.Record("node2 op-key", first)
		return true
	})
	r.n1.Resume()
	time.Sleep(3 * time.Second) // node1 settles its own calls again
	for _, n := range []*harness.Node{r.n1, r.n2, r.n1} {
		resp := keyed(n)
		if resp.Status != http.StatusOK {
			t.Errorf("replay of op-key on %s: %s", n.Name(), resp)
			continue
		}
		if got := resp.Strings("numbers"); !slices.Equal(got, first) {
			t.Errorf("replay of op-key on %s answered %v, first %v", n.Name(), got, first)
			r.l.Record(n.Name()+" op-key replay", got)
		}
	}
	for range 3 {
		mustAllocate(t, r.c, r.l, r.n1, "op", 5)
	}
	gaps := gapsOf(t, r.c, []*harness.Node{r.n2}, "op")
	for _, num := range first {
		if inGap(gaps, num) {
			t.Errorf("op-key was answered %s, which lies in a gap", num)
		}
	}
	r.checkAccounted(t)
}

// TestLostAnswerWhoseStateIsLostAfterACheckpoint: node1's allocate call runs
// in Redis and its reply is lost (node1's route from Redis drops replies); node2
// allocates on, and its checkpoints record the pool's cursor above the lost
// call's numbers; then the pool's seg key, which holds the call's memo, is lost
// (evicted, deleted) before node1 can read it. The reseed's recovery gap starts
// at the checkpoint, which must stay below every memo in place: the lost call's
// numbers must still end up in a gap.
func TestLostAnswerWhoseStateIsLostAfterACheckpoint(t *testing.T) {
	ctx := context.Background()
	r := newOrphanRig(t, "mm")
	r.rpx.DropReplies()
	r.lose(t, 7)
	memos := memoFields(t, r.rds, "mm")
	if len(memos) == 0 {
		t.Fatal("no memo in the pool's state after the lost call")
	}
	deadline := time.Now().Add(3 * time.Second) // three checkpoints of node2
	for time.Now().Before(deadline) {
		mustAllocate(t, r.c, r.l, r.n2, "mm", 5)
		time.Sleep(100 * time.Millisecond)
	}
	n, err := r.rds.DelKeys(ctx, "numberd:{mm}:seg")
	must(t, err)
	if n != 1 {
		t.Fatalf("deleted %d seg keys, want 1", n)
	}
	mustAllocate(t, r.c, r.l, r.n2, "mm", 5) // reseeds
	r.rpx.KeepReplies()
	missing, gaps := unaccounted(t, r.c, []*harness.Node{r.n2}, r.n2, "mm", []span{r.seg}, r.l, 10*time.Second)
	if len(missing) > 0 {
		t.Errorf("%d numbers below the cursor reached no caller and lie in no gap: %v (memos lost with the state: %v)", len(missing), missing, memos)
	}
	sizes, _ := gapSizes(gaps)
	t.Logf("%d numbers handed out; gaps %v", r.l.Count(), sizes)
}

// memoFields returns the memos in pool's state: the fields m:<call id> of its
// seg key, each with its value.
func memoFields(t *testing.T, rds *harness.Redis, pool string) []string {
	t.Helper()
	all, err := rds.Client().HGetAll(context.Background(), "numberd:{"+pool+"}:seg").Result()
	must(t, err)
	var out []string
	for f, v := range all {
		if strings.HasPrefix(f, "m:") {
			out = append(out, f+"="+v)
		}
	}
	return out
}
