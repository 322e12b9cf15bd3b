package distributed_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/numberd/numberd/test/harness"
)

// unaccounted lists the numbers of segs below their cursors (used, as node
// answers it) that l never received and no gap holds, waiting up to wait for gaps
// still being recorded; it returns them with the gaps.
func unaccounted(t *testing.T, c *harness.Client, nodes []*harness.Node, node *harness.Node, pool string, segs []span, l *harness.Ledger, wait time.Duration) (missing []string, gaps []harness.Gap) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		listed, err := c.Segments(context.Background(), node.URL(), pool)
		must(t, err)
		gaps, missing = gapsOf(t, c, nodes, pool), nil
		for _, seg := range segs {
			var used int64 = -1
			for _, ls := range listed {
				if ls.Start == seg.start() {
					used, _ = strconv.ParseInt(ls.Used, 10, 64)
				}
			}
			if used < 0 {
				t.Fatalf("pool %s lists no segment starting %s", pool, seg.start())
			}
			for v := seg.lo; v < seg.lo+used; v++ {
				if n := seg.number(v); !l.Has(n) && !inGap(gaps, n) {
					missing = append(missing, n)
				}
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			return missing, gaps
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// newPoolRun creates pool, of one wide segment, through n, and returns a client
// and a ledger for the numbers handed out.
func newPoolRun(t *testing.T, n *harness.Node, pool string) (*harness.Client, span, *harness.Ledger) {
	t.Helper()
	c := harness.NewClient(4)
	t.Cleanup(c.Close)
	seg := span{"24442", 1, 1_000_000}
	mustPool(t, c, n, pool, seg)
	return c, seg, harness.NewLedger(t)
}

// proxiedDSN starts a proxy to dsn's server and returns it with a DSN through it.
func proxiedDSN(t *testing.T, dsn string) (*harness.Proxy, string) {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	must(t, err)
	px := harness.StartProxy(t, cfg.Addr)
	cfg.Addr = px.Addr()
	return px, cfg.FormatDSN()
}

// TestLostAnswerSettledAfterItsMemoIsGone: an allocate call runs in Redis but
// its reply is lost (the way back from Redis drops everything), so the request
// answers 503 and the resolver is to settle the call from its memo. The resolver
// reads the memo as soon as Redis answers again, but cannot record the gap: the
// store is cut. The memo then disappears (expired, evicted, deleted). Once the
// store is back, the gap is recorded from what the resolver read: the numbers
// are accounted for. On the way, it checks that a node keeps no memo of the
// calls whose answers it got, but the last one.
func TestLostAnswerSettledAfterItsMemoIsGone(t *testing.T) {
	ctx := context.Background()
	rds := harness.StartRedis(t, "redis")
	rpx := harness.StartProxy(t, rds.Addr())
	mpx, proxied := proxiedDSN(t, mysqlDSN(t))
	n1 := startHoleNode(t, "node1", "redis://"+rpx.Addr()+"/0", proxied, holeTimeout)
	nodes := []*harness.Node{n1}
	c, seg, l := newPoolRun(t, n1, "me")
	for range 20 {
		mustAllocate(t, c, l, n1, "me", 5)
	}
	memos := memoFields(t, rds, "me")
	if len(memos) > 1 {
		t.Errorf("after 20 answered calls Redis holds %d memos of them, want the last one at most", len(memos))
	}

	rpx.DropReplies()
	nums, resp, err := c.Allocate(ctx, n1.URL(), "me", 5)
	must(t, err)
	if resp.Status == 200 {
		t.Fatalf("allocate with Redis's replies dropped answered %v", nums)
	}
	mpx.Cut()
	rpx.KeepReplies()
	// The resolver retries every second: let it read the memo and fail on the store.
	time.Sleep(3 * time.Second)
	memos = memoFields(t, rds, "me")
	for _, m := range memos {
		field, _, _ := strings.Cut(m, "=")
		must(t, rds.Client().HDel(ctx, "numberd:{me}:seg", field).Err())
	}
	mpx.Restore()

	eventually(t, 10*time.Second, "an allocation after the store is back", func() bool {
		nums, r, err := c.Allocate(ctx, n1.URL(), "me", 5)
		if err == nil && r.Status == 200 {
			l.Record(n1.Name(), nums)
			return true
		}
		return false
	})
	missing, gaps := unaccounted(t, c, nodes, n1, "me", []span{seg}, l, 10*time.Second)
	if len(missing) > 0 {
		t.Errorf("%d numbers below the cursor reached no caller and lie in no gap: %v (the request that took them was answered 503)", len(missing), missing)
	}
	sizes, _ := gapSizes(gaps)
	t.Logf("%d numbers handed out; gaps %v; %d memos deleted while the store was cut", l.Count(), sizes, len(memos))
}

// TestNumbersTakenForAnUnreadableSegment: node2 serves a pool whose second segment was
// loaded through node1 after node2 last read the pool's segments. node1 uses up
// the first segment, its lease extension reserves numbers of the second, and then
// node2 loses MySQL (its own path to it is cut; Redis is fine). node2's next
// allocate call takes numbers of the second segment in Redis, but turning their
// offsets into numbers needs the segment, which node2 has not cached and cannot
// read: the request answers 503 without claiming that nothing was consumed,
// and the resolver records what it took as an abandoned gap once the store
// answers again.
func TestNumbersTakenForAnUnreadableSegment(t *testing.T) {
	t.Run("the node settles", func(t *testing.T) { unreadableSegment(t, false) })
	// The node that took the numbers dies before it can record them (its store
	// was away): another node finds its entry of unsettled work in Redis and
	// records them, once the entry is old enough to be an orphan (30 s).
	t.Run("another node settles", func(t *testing.T) { unreadableSegment(t, true) })
}

func unreadableSegment(t *testing.T, die bool) {
	ctx := context.Background()
	rds := harness.StartRedis(t, "redis")
	dsn := mysqlDSN(t)
	px, proxied := proxiedDSN(t, dsn)
	n1 := startHoleNodes(t, 1, "redis://"+rds.Addr()+"/0", dsn, holeTimeout)[0]
	n2 := harness.StartNode(t, harness.NodeConfig{Name: "node2", RedisURL: "redis://" + rds.Addr() + "/0", MySQLDSN: proxied,
		Args: []string{"--lease-max", strconv.Itoa(holeLease), "--request-timeout", holeTimeout.String()}})
	nodes := []*harness.Node{n1, n2}
	c := harness.NewClient(4)
	t.Cleanup(c.Close)
	seg1, seg2 := span{"24442", 1, 20}, span{"24442", 1001, 1_000_000}
	mustPool(t, c, n1, "us", seg1)
	l := harness.NewLedger(t)
	mustAllocate(t, c, l, n2, "us", 1) // node2 knows the pool, and segment 1
	if _, err := c.LoadSegment(ctx, n1.URL(), "us", seg2.start(), seg2.end()); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		mustAllocate(t, c, l, n1, "us", 5) // 19 of segment 1, then segment 2
	}
	px.Cut()
	nums, resp, err := c.Allocate(ctx, n2.URL(), "us", 3)
	must(t, err)
	t.Logf("node2, MySQL cut: %s", resp)
	if resp.Status == 200 {
		l.Record(n2.Name(), nums)
	} else if strings.Contains(fmt.Sprint(resp.JSON["detail"]), "nothing was consumed") {
		t.Errorf("node2's 503 claims %q: it took numbers it could not name", resp.JSON["detail"])
	}
	wait := 10 * time.Second
	if die {
		time.Sleep(500 * time.Millisecond) // its first settling pass registers the work
		n2.Kill9()
		nodes = []*harness.Node{n1}
		wait = 60 * time.Second
	}
	px.Restore()
	time.Sleep(2 * time.Second)
	for range 4 {
		for _, n := range nodes {
			mustAllocate(t, c, l, n, "us", 5)
		}
	}
	missing, gaps := unaccounted(t, c, nodes, n1, "us", []span{seg1, seg2}, l, wait)
	if len(missing) > 0 {
		t.Errorf("%d numbers below the cursors reached no caller and lie in no gap: %v", len(missing), missing)
	}
	sizes, _ := gapSizes(gaps)
	t.Logf("%d numbers handed out; gaps %v", l.Count(), sizes)
}

// TestLostAnswerSettledByAnotherNode: an allocate call runs in Redis but its
// reply is lost, and the node that made it dies before Redis answers it again.
// The node kept the call in the store (Redis was away), and another node settles
// it once it is old enough to be an orphan (30 s): its numbers are an abandoned
// gap.
func TestLostAnswerSettledByAnotherNode(t *testing.T) {
	ctx := context.Background()
	rds := harness.StartRedis(t, "redis")
	rpx := harness.StartProxy(t, rds.Addr())
	dsn := mysqlDSN(t)
	n1 := startHoleNode(t, "node1", "redis://"+rpx.Addr()+"/0", dsn, holeTimeout)
	n2 := startHoleNode(t, "node2", "redis://"+rds.Addr()+"/0", dsn, holeTimeout)
	c, seg, l := newPoolRun(t, n1, "ob")
	for range 5 {
		mustAllocate(t, c, l, n1, "ob", 5)
		mustAllocate(t, c, l, n2, "ob", 5)
	}

	rpx.DropReplies()
	nums, resp, err := c.Allocate(ctx, n1.URL(), "ob", 7)
	must(t, err)
	if resp.Status == 200 {
		t.Fatalf("allocate with Redis's replies dropped answered %v", nums)
	}
	time.Sleep(3 * time.Second) // node1's settling pass keeps the call somewhere
	n1.Kill9()
	rpx.KeepReplies()

	missing, gaps := unaccounted(t, c, []*harness.Node{n2}, n2, "ob", []span{seg}, l, 60*time.Second)
	if len(missing) > 0 {
		t.Errorf("%d numbers below the cursor reached no caller and lie in no gap: %v", len(missing), missing)
	}
	sizes, _ := gapSizes(gaps)
	settledBy := len(n2.LogsMatching("settled work other nodes left unsettled"))
	t.Logf("%d numbers handed out; gaps %v; node2 logged %d sweeps that settled work", l.Count(), sizes, settledBy)
}
