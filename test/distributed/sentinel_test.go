package distributed_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/numberd/numberd/test/harness"
)

// TestSentinelFailover runs two nodes on a primary and a replica watched by three
// Sentinels (redis-sentinel:// URL) and forces a failover (SENTINEL FAILOVER)
// under load: no number may be handed out twice, and allocation must go on on the
// promoted replica.
func TestSentinelFailover(t *testing.T) {
	ctx := context.Background()
	primary := harness.StartRedis(t, "primary")
	replica := harness.StartReplica(t, "replica", primary)
	sentinels := harness.StartSentinels(t, "mymaster", primary, 1, 3)
	nodes := startNodes(t, 2, sentinels.URL(), mysqlDSN(t))
	c := harness.NewClient(32)
	defer c.Close()
	spans := []span{{"24442", 1, 500_000}}
	mustPool(t, c, nodes[0], "sentinel", spans...)
	l := harness.NewLedger(t)
	ld := startLoad(t, c, l, loadOpts{pools: []string{"sentinel"}, nodes: nodes, workers: 16, maxCount: 5})
	start := time.Now()

	ld.waitFor(3000, 30*time.Second, "3000 numbers before the failover")
	harness.WaitInSync(t, primary, replica)
	before := l.Count()
	failoverAt := time.Now()
	if err := sentinels.Failover(ctx); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	var switched time.Duration
	eventually(t, 20*time.Second, "the Sentinels to name the replica the master", func() bool {
		addr, err := sentinels.MasterAddr(ctx)
		switched = time.Since(failoverAt)
		return err == nil && addr == replica.Addr()
	})
	afterSwitch := l.Count()
	took := ld.waitFor(afterSwitch+5000, 30*time.Second, "5000 numbers after the failover")
	ld.Stop()
	if t.Failed() {
		return
	}
	role, err := replica.Info(ctx, "replication")
	if err != nil || role["role"] != "master" {
		t.Errorf("the replica's role after the failover is %q (%v), want master", role["role"], err)
	}
	// The promoted replica holds the pool's state now: allocation went on there.
	if n, err := replica.Client().Exists(ctx, "numberd:{sentinel}:meta").Result(); err != nil || n != 1 {
		t.Errorf("the promoted replica has no state of the pool (%d, %v)", n, err)
	}
	reseeds := 0.0
	for _, n := range nodes {
		m, err := c.Metrics(ctx, n.URL())
		if err != nil {
			t.Fatal(err)
		}
		reseeds += m.Sum("numberd_reseeds_total", `pool="sentinel"`)
	}
	// The promoted replica is another Redis process: its copy of the state must
	// be reseeded from the store (the first seed counts too).
	if reseeds < 2 {
		t.Errorf("numberd_reseeds_total = %v over the nodes, want at least 2 (the first seed and one after the failover)", reseeds)
	}
	gaps := gapsOf(t, c, nodes, "sentinel")
	checkGapCounts(t, gaps, spans)
	skipped := checkLeaseBound(t, gaps, spans, l)
	sizes, _ := gapSizes(gaps)
	lastUnavail := "none"
	if ns := ld.lastUnavail.Load(); ns != 0 {
		lastUnavail = time.Unix(0, ns).Sub(failoverAt).Round(time.Millisecond).String() + " after SENTINEL FAILOVER"
	}
	t.Logf("sentinel: %d numbers before the failover, %d while the Sentinels switched (%v), 5000 more %v after; "+
		"503 unavailable %d (the last %s); slowest answer %v; gaps [%s], unissued per reseed %v; reseeds %v",
		before, afterSwitch-before, switched.Round(time.Millisecond), took.Round(time.Millisecond),
		ld.unavailable.Load(), lastUnavail, time.Duration(ld.maxLatency.Load()).Round(time.Millisecond),
		strings.Join(sizes, ", "), skipped, reseeds)
	logGaps(t, gaps, start)
	logReseeds(t, nodes)
}
