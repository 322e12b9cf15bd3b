package distributed_test

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/numberd/numberd/test/harness"
)

// TestKeyReplayedFromARefusedAnswer: the pool's keys are written back from a
// dump (RESTORE … REPLACE) after node1 handed out numbers past it. node2, whose
// path to MySQL is slow (200 ms each way) but whose floors are current, takes a
// new Idempotency-Key's numbers from the restored state and refuses the answer
// as gone back: the numbers were handed out by node1 already. Redis keeps them
// as the key's record until the store's abandoned record for the key, on its
// slow way, says otherwise. The client retries the key on node3, which never saw
// the newer state either: it must not be answered the refused numbers, and
// both nodes must answer the key the same numbers.
func TestKeyReplayedFromARefusedAnswer(t *testing.T) {
	ctx := context.Background()
	rds := harness.StartRedis(t, "redis")
	dsn := mysqlDSN(t)
	px2, dsn2 := proxiedDSN(t, dsn)
	args := []string{"--lease-max", strconv.Itoa(holeLease), "--request-timeout", "10s"}
	url := "redis://" + rds.Addr() + "/0"
	n1 := harness.StartNode(t, harness.NodeConfig{Name: "node1", RedisURL: url, MySQLDSN: dsn, Args: args})
	n2 := harness.StartNode(t, harness.NodeConfig{Name: "node2", RedisURL: url, MySQLDSN: dsn2, Args: args})
	n3 := harness.StartNode(t, harness.NodeConfig{Name: "node3", RedisURL: url, MySQLDSN: dsn, Args: args})
	nodes := []*harness.Node{n1, n2, n3}
	c, seg, l := newPoolRun(t, n1, "rf")
	for range 3 {
		for _, n := range nodes {
			mustAllocate(t, c, l, n, "rf", 5)
		}
	}
	dump, err := rds.DumpKeys(ctx, "numberd:{rf}:*")
	must(t, err)
	for range 10 {
		mustAllocate(t, c, l, n1, "rf", 5)
	}
	floor := highest(l)
	time.Sleep(3 * time.Second) // every node's floors hold node1's cursor
	must(t, rds.RestoreKeys(ctx, dump))
	px2.Delay(200 * time.Millisecond)

	keyed := func(n *harness.Node) *harness.Response {
		resp, err := c.Do(ctx, http.MethodPost, n.URL()+"/v1/pools/rf/numbers", map[string]int{"count": 3}, "Idempotency-Key", "rf-key")
		if err != nil {
			return &harness.Response{Body: []byte(err.Error())}
		}
		return resp
	}
	done := make(chan *harness.Response, 1)
	go func() { done <- keyed(n2) }()
	time.Sleep(600 * time.Millisecond) // node2 looked the key up, and took the restored state's numbers
	r3 := keyed(n3)
	r2 := <-done
	px2.Undelay()
	t.Logf("node2: %s", r2)
	t.Logf("node3: %s", r3)
	var after []string
	var first []string
	for _, a := range []struct {
		n *harness.Node
		r *harness.Response
	}{{n3, r3}, {n2, r2}} {
		if a.r.Status != http.StatusOK {
			continue
		}
		nums := a.r.Strings("numbers")
		after = append(after, nums...)
		switch {
		case first == nil:
			first = nums
			l.Record(a.n.Name()+" rf-key", nums)
		case !slices.Equal(first, nums):
			t.Errorf("rf-key answered %v, and %v on %s", first, nums, a.n.Name())
			l.Record(a.n.Name()+" rf-key", nums)
		}
	}
	gaps := gapsOf(t, c, nodes, "rf")
	checkGapCounts(t, gaps, []span{seg})
	checkAbove(t, after, floor, gaps)
	logReseeds(t, nodes)
}

// TestAbandonedKeyReusedWithAnotherRequest: a keyed request's reply from Redis
// is lost, so it answers 503 ("a retry with the same Idempotency-Key is safe"),
// and the resolver abandons its numbers. The key is then sent with another
// request (count 5 instead of 3): the contract answers a key reused with a
// different request 422 idempotency_conflict, whatever became of the first.
func TestAbandonedKeyReusedWithAnotherRequest(t *testing.T) {
	ctx := context.Background()
	rds := harness.StartRedis(t, "redis")
	rpx := harness.StartProxy(t, rds.Addr())
	n1 := startHoleNode(t, "node1", "redis://"+rpx.Addr()+"/0", mysqlDSN(t), holeTimeout)
	c, _, l := newPoolRun(t, n1, "ak")
	mustAllocate(t, c, l, n1, "ak", 1)
	keyed := func(count int) *harness.Response {
		resp, err := c.Do(ctx, http.MethodPost, n1.URL()+"/v1/pools/ak/numbers", map[string]int{"count": count}, "Idempotency-Key", "ak-key")
		must(t, err)
		return resp
	}
	rpx.DropReplies()
	if r := keyed(3); r.Status == http.StatusOK {
		t.Fatalf("keyed allocation with Redis's replies dropped: %s", r)
	}
	rpx.KeepReplies()
	eventually(t, 10*time.Second, "the lost call's abandoned gap", func() bool {
		gaps, err := c.Gaps(ctx, n1.URL(), "ak")
		return err == nil && len(gaps) > 0
	})
	r := keyed(5)
	t.Logf("ak-key with count 5 after count 3 was abandoned: %s", r)
	if r.Status == http.StatusOK {
		l.Record("node1 ak-key", r.Strings("numbers"))
	}
	if r.Status != http.StatusUnprocessableEntity || r.Code() != "idempotency_conflict" {
		t.Errorf("ak-key, used with count 3, then with count 5: %d %s, want 422 idempotency_conflict", r.Status, r.Code())
	}
}
