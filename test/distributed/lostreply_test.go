package distributed_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/numberd/numberd/test/harness"
)

// TestReseedWhoseSeedReplyIsLost: as in TestNoNumberHandedOutInsideARecoveryGap,
// node1 reseeds the pool over a slow path to MySQL (200 ms each way) while node2
// keeps allocating from the Redis state the reseed replaces; but the reply of
// node1's seed.lua, the one that says where the replaced state stopped, is lost
// (node1's route from Redis drops replies from the middle of the reseed on).
// seed.lua ran: the state was replaced, and numbers node2 handed out after the
// store recorded the wide recovery gap lie in it. No number handed out may lie
// in a recovery gap recorded before it was handed out.
func TestReseedWhoseSeedReplyIsLost(t *testing.T) {
	ctx := context.Background()
	rds := harness.StartRedis(t, "redis")
	rpx1 := harness.StartProxy(t, rds.Addr())
	dsn := mysqlDSN(t)
	px1, dsn1 := proxiedDSN(t, dsn)
	px2, dsn2 := proxiedDSN(t, dsn)
	args := []string{"--lease-max", strconv.Itoa(holeLease), "--request-timeout", "10s"}
	n1 := harness.StartNode(t, harness.NodeConfig{Name: "node1", RedisURL: "redis://" + rpx1.Addr() + "/0", MySQLDSN: dsn1, Args: args})
	n2 := harness.StartNode(t, harness.NodeConfig{Name: "node2", RedisURL: "redis://" + rds.Addr() + "/0", MySQLDSN: dsn2, Args: args})
	nodes := []*harness.Node{n1, n2}
	c, _, l := newPoolRun(t, n1, "sl")
	for range 30 {
		mustAllocate(t, c, l, n1, "sl", 5)
		mustAllocate(t, c, l, n2, "sl", 5)
	}
	time.Sleep(500 * time.Millisecond)

	// What a node killed between ReserveAt and lease.lua leaves behind: the
	// next extension finds Redis and the store disagreeing, and reseeds.
	leaseDisagreement(t, dsn, "sl")
	px2.Cut()
	px1.Delay(200 * time.Millisecond)

	stop := keepAllocating(c, l, n2, "sl")
	done := make(chan *harness.Response, 1)
	go func() {
		_, r, err := c.Allocate(ctx, n1.URL(), "sl", 1000)
		if err != nil {
			r = &harness.Response{Body: []byte(err.Error())}
		}
		done <- r
	}()
	// node1's lock and peek come before the store's reseed (about 1.6 s of
	// round trips at 200 ms), its seed.lua after.
	time.Sleep(900 * time.Millisecond)
	rpx1.DropReplies()
	r1 := <-done
	t.Logf("node1's allocation of 1000: %s", r1)
	stop()
	rpx1.KeepReplies()
	px1.Undelay()
	px2.Restore()
	time.Sleep(3 * time.Second)
	for range 5 {
		mustAllocate(t, c, l, n2, "sl", 5)
	}

	// The gap is narrowed once the state it was recorded against is replaced,
	// by the report that state's replacement keeps: within a resolver pass.
	var gaps []harness.Gap
	var after int
	var samples []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		gaps = gapsOf(t, c, nodes, "sl")
		after, samples = inRecoveryGapsAfter(l, gaps)
		if after == 0 || time.Now().After(deadline) {
			break
		}
	}
	sizes, _ := gapSizes(gaps)
	t.Logf("%d numbers handed out; gaps %v", l.Count(), sizes)
	if after > 0 {
		t.Errorf("%d numbers were handed out after the recovery gap that holds them was recorded, e.g. %v", after, samples)
	}
	logReseeds(t, nodes)
}

// inRecoveryGapsAfter counts the numbers handed out after a recovery gap that
// holds them was recorded, with a few examples.
func inRecoveryGapsAfter(l *harness.Ledger, gaps []harness.Gap) (after int, samples []string) {
	for _, n := range l.Numbers() {
		for _, g := range gaps {
			if g.Reason != "recovery" || n < g.Start || n > g.End {
				continue
			}
			if by, at, _ := l.When(n); at.After(g.At) {
				after++
				if len(samples) < 5 {
					samples = append(samples, fmt.Sprintf("%s by %s at %s (gap %s..%s recorded at %s)", n, by,
						at.Format("15:04:05.000"), g.Start, g.End, g.At.Format("15:04:05.000")))
				}
			}
		}
	}
	return after, samples
}

// inRecoveryGaps counts the numbers handed out that lie in a recovery gap.
func inRecoveryGaps(l *harness.Ledger, gaps []harness.Gap) int {
	var n int
	for _, num := range l.Numbers() {
		for _, g := range gaps {
			if g.Reason == "recovery" && num >= g.Start && num <= g.End {
				n++
			}
		}
	}
	return n
}
