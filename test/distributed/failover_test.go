package distributed_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/numberd/numberd/test/harness"
)

// usedInRedis sums the "<id>:used" fields of pool's state on the Redis server c:
// how many numbers that server believes were handed out.
func usedInRedis(t *testing.T, c *redis.Client, pool string) int64 {
	t.Helper()
	fields, err := c.HGetAll(context.Background(), "numberd:{"+pool+"}:seg").Result()
	if err != nil {
		t.Fatal(err)
	}
	var used int64
	for k, v := range fields {
		if strings.HasSuffix(k, ":used") {
			n, _ := strconv.ParseInt(v, 10, 64)
			used += n
		}
	}
	return used
}

// TestFailoverToStaleReplica fails numberd over to a replica that stopped
// following its primary (REPLICAOF NO ONE) while the primary went on handing out
// numbers: the proxy the nodes reach Redis through is pointed at the stale copy
// and every connection cut, under load. The copy's counters are behind what was
// handed out; numberd must notice it (another Redis process) and reseed above the
// durable high-water mark, with a recovery gap within the lease bound.
func TestFailoverToStaleReplica(t *testing.T) {
	ctx := context.Background()
	primary := harness.StartRedis(t, "primary")
	replica := harness.StartReplica(t, "replica", primary)
	proxy := harness.StartProxy(t, primary.Addr())
	nodes := startNodes(t, 2, "redis://"+proxy.Addr()+"/0", mysqlDSN(t))
	c := harness.NewClient(32)
	defer c.Close()
	spans := []span{{"24442", 1, 500_000}}
	mustPool(t, c, nodes[0], "stale", spans...)
	l := harness.NewLedger(t)
	ld := startLoad(t, c, l, loadOpts{pools: []string{"stale"}, nodes: nodes, workers: 16, maxCount: 5})
	start := time.Now()

	ld.waitFor(3000, 30*time.Second, "3000 numbers on the primary")
	harness.WaitInSync(t, primary, replica)
	if err := replica.Client().Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	staleUsed := usedInRedis(t, replica.Client(), "stale")
	ld.waitFor(l.Count()+5000, 30*time.Second, "5000 numbers on the primary after the replica stopped following")

	numbers := l.Numbers()
	maxBefore := numbers[len(numbers)-1]
	handedBefore := len(numbers)
	primaryUsed := usedInRedis(t, primary.Client(), "stale")
	switchAt := time.Now()
	proxy.Retarget(replica.Addr())
	if primaryUsed-staleUsed < 4000 {
		t.Fatalf("the replica is %d numbers behind the primary, want at least 4000: the test proves nothing", primaryUsed-staleUsed)
	}
	ld.waitFor(l.Count()+5000, 30*time.Second, "5000 numbers after failing over to the stale replica")
	time.Sleep(time.Until(switchAt.Add(3 * time.Second)))
	ld.Stop()
	if t.Failed() {
		return
	}
	if used := usedInRedis(t, primary.Client(), "stale"); used > primaryUsed+int64(ld.opts.workers*ld.opts.maxCount) {
		t.Errorf("the old primary handed out %d more numbers after the switch", used-primaryUsed)
	}

	gaps := gapsOf(t, c, nodes, "stale")
	checkGapCounts(t, gaps, spans)
	var recovery []harness.Gap
	for _, g := range gaps {
		if g.Reason == "recovery" {
			recovery = append(recovery, g)
		}
	}
	if len(recovery) == 0 {
		t.Errorf("no recovery gap recorded after failing over to a copy %d numbers behind", primaryUsed-staleUsed)
	}
	skipped := checkLeaseBound(t, gaps, spans, l)

	// Answers received well after the switch come from the reseeded copy: above
	// every number handed out before it, and outside the gaps.
	late := 0
	for _, n := range l.Numbers() {
		_, at, _ := l.When(n)
		if at.Before(switchAt.Add(2 * time.Second)) {
			continue
		}
		late++
		if n <= maxBefore {
			t.Errorf("number %s handed out %v after the failover is not above %s, handed out before it", n, at.Sub(switchAt), maxBefore)
		}
		if inGap(gaps, n) {
			t.Errorf("number %s handed out %v after the failover lies in a recovery gap", n, at.Sub(switchAt))
		}
	}
	if late == 0 {
		t.Errorf("no number received 2s or more after the failover")
	}
	sizes, gapped := gapSizes(gaps)
	t.Logf("stale failover: replica %d numbers behind the primary at the switch; %d numbers handed out before, %d after "+
		"(%d received 2s or more after it); gaps %v (total %d; unissued per reseed %v, lease bound %d); 503 unavailable %d, slowest answer %v",
		primaryUsed-staleUsed, handedBefore, l.Count()-handedBefore, late, sizes, gapped, skipped, leaseMax,
		ld.unavailable.Load(), time.Duration(ld.maxLatency.Load()).Round(time.Millisecond))
	logGaps(t, gaps, start)
	logReseeds(t, nodes)
}
