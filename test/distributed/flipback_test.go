package distributed_test

import (
	"testing"

	"github.com/numberd/numberd/test/harness"
)

// TestNoGapIsIssuedAfterFlipBack: the node's Redis connection goes to server B
// (a failover: B has no state of the pool, or a stale one), numberd reseeds on B
// and records the numbers reserved on A as a recovery gap ("will never be handed
// out"); then the connection comes back to A, which never went away (a partition
// heals, a proxy or DNS flips back, a client of a split brain). A's state carries
// A's own run id but an older seed generation than the node has seen: it must be
// reseeded, not allowed to hand out the rest of its old lease, which lies inside
// the gap.
func TestNoGapIsIssuedAfterFlipBack(t *testing.T) {
	a := harness.StartRedis(t, "a")
	b := harness.StartRedis(t, "b")
	proxy := harness.StartProxy(t, a.Addr())
	nodes := startNodes(t, 1, "redis://"+proxy.Addr()+"/0", mysqlDSN(t))
	node := nodes[0]
	c := harness.NewClient(8)
	defer c.Close()
	mustPool(t, c, node, "flip", span{"24442", 1, 1_000_000})
	l := harness.NewLedger(t)
	for range 10 {
		mustAllocate(t, c, l, node, "flip", 5)
	}
	proxy.Retarget(b.Addr())
	for range 10 {
		mustAllocate(t, c, l, node, "flip", 5)
	}
	gaps := gapsOf(t, c, nodes, "flip")
	if len(gaps) == 0 {
		t.Fatal("no recovery gap after the switch to B")
	}
	proxy.Retarget(a.Addr())
	for range 10 {
		for _, n := range mustAllocate(t, c, l, node, "flip", 5) {
			if inGap(gaps, n) {
				t.Errorf("number %s, handed out after the switch back to A, lies in the gap %s..%s recorded at the switch to B",
					n, gaps[0].Start, gaps[0].End)
			}
		}
	}
	logReseeds(t, nodes)
}
