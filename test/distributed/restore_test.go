// Regression tests of two holes a fault hunt with real processes found: a Redis
// state restored in place and served by a node that never saw the newer one, and
// numbers handed out by the old state while a reseed recorded them as skipped.

package distributed_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/numberd/numberd/test/harness"
)

// TestRestoredStateMetByANodeThatSawNothingNewer: the pool's keys are dumped
// (DUMP) while two nodes serve it, one node goes on allocating (still within the
// lease the dump holds), and the dump is written back in place (RESTORE …
// REPLACE): run id, replication id and generation stay, the counter goes back.
// TestHoleKeyRestore covers a node that saw the newer version; here the next
// request goes to a node that did not: one idle since before the dump (once the
// store's checkpoint holds the newer cursor, a second or two), or the node that
// allocated, after a restart (its last checkpoint at Close). The store's
// checkpointed cursor lies above the restored state, so both refuse it and
// reseed above it: nothing is handed out twice.
func TestRestoredStateMetByANodeThatSawNothingNewer(t *testing.T) {
	t.Run("idle node", func(t *testing.T) { keyRestoreUnseen(t, "idle") })
	t.Run("restarted node", func(t *testing.T) { keyRestoreUnseen(t, "restarted") })
	// node2 is paused (SIGSTOP) across the dump, node1's allocations, their
	// checkpoint and the restore: its floors are stale when it resumes, and it
	// must read them again before it serves.
	t.Run("paused node", func(t *testing.T) { keyRestoreUnseen(t, "paused") })
}

func keyRestoreUnseen(t *testing.T, how string) {
	ctx := context.Background()
	r := newHoleRig(t, harness.StartRedis(t, "redis"), "ku", 0)
	n1, n2 := r.nodes[0], r.nodes[1]
	// Both nodes know the pool and its state.
	for range 4 {
		mustAllocate(t, r.c, r.l, n1, "ku", 5)
		mustAllocate(t, r.c, r.l, n2, "ku", 5)
	}
	if how == "paused" {
		n2.Pause()
	}
	dump, err := r.rds.DumpKeys(ctx, "numberd:{ku}:*")
	must(t, err)
	atDump := r.l.Count()
	// node1 alone goes on, well within the lease the dump holds.
	for range 10 {
		mustAllocate(t, r.c, r.l, n1, "ku", 5)
	}
	floor := highest(r.l)
	next := n2
	if how == "restarted" {
		// A graceful stop: its final checkpoint writes the cursor (above the
		// dump's) into the store before the restore.
		n1.Stop()
		next = n1
	} else {
		// node2 learns how far node1 went from the store: node1 checkpoints and
		// node2 reads the checkpoints every second. A restore within that time
		// is beyond any durable mark (see Distributed.checkpoint); this one comes
		// after both passes.
		time.Sleep(2500 * time.Millisecond)
	}
	must(t, r.rds.RestoreKeys(ctx, dump))
	switch how {
	case "restarted":
		n1.Restart()
	case "paused":
		n2.Resume()
	}
	if st, err := r.c.Pool(ctx, next.URL(), "ku"); err == nil && st.ActiveSegment != nil {
		t.Logf("after the restore %s shows the pool's next number as %s", next.Name(), st.ActiveSegment.Next)
	}
	dupsBefore := r.l.Duplicates()
	var after []string
	for range 10 {
		after = append(after, mustAllocate(t, r.c, r.l, next, "ku", 5)...)
	}
	checkAbove(t, after, floor, r.gaps(t))
	t.Logf("dumped %d keys %v at %d numbers; restored at %d (highest %s); %s then handed out %d numbers, %d of them again",
		len(dump), dumpKinds(dump), atDump, r.l.Count()-len(after), floor, next.Name(), len(after), r.l.Duplicates()-dupsBefore)
	logReseeds(t, r.nodes)
}

// TestNoNumberHandedOutInsideARecoveryGap: a node dies (kill -9) between the two
// halves of a lease extension: the store has reserved more numbers (reserved_hi
// raised), Redis's lease was never raised. The next extension finds the two
// disagreeing and reseeds. The Redis state it replaces stays usable to every node
// until seed.lua runs, and node1 reseeds over a slow path to MySQL (200 ms each
// way) while node2, which cannot reach MySQL, keeps allocating from the old lease.
// The recovery gap must start where the replaced state stopped (seed.lua reports
// it), so that no number handed out, before or during the reseed, lies inside it:
// invariant 3 says the numbers a reseed skips are never handed out, invariant 9
// that no number is both issued and in a gap.
func TestNoNumberHandedOutInsideARecoveryGap(t *testing.T) {
	ctx := context.Background()
	rds := harness.StartRedis(t, "redis")
	dsn := mysqlDSN(t)
	px1, dsn1 := proxiedDSN(t, dsn)
	px2, dsn2 := proxiedDSN(t, dsn)
	args := []string{"--lease-max", strconv.Itoa(holeLease), "--request-timeout", "10s"}
	n1 := harness.StartNode(t, harness.NodeConfig{Name: "node1", RedisURL: "redis://" + rds.Addr() + "/0", MySQLDSN: dsn1, Args: args})
	n2 := harness.StartNode(t, harness.NodeConfig{Name: "node2", RedisURL: "redis://" + rds.Addr() + "/0", MySQLDSN: dsn2, Args: args})
	nodes := []*harness.Node{n1, n2}
	c, _, l := newPoolRun(t, n1, "rg")
	for range 30 {
		mustAllocate(t, c, l, n1, "rg", 5)
		mustAllocate(t, c, l, n2, "rg", 5)
	}
	time.Sleep(500 * time.Millisecond) // the extensions under way finish

	// What a node killed between ReserveAt and lease.lua leaves behind.
	leaseDisagreement(t, dsn, "rg")
	px2.Cut()
	px1.Delay(200 * time.Millisecond)

	// node2 allocates one number every 10 ms from the lease Redis holds.
	stop := keepAllocating(c, l, n2, "rg")
	// node1 needs more than the lease: its extension meets the disagreement.
	_, r1, err := c.Allocate(ctx, n1.URL(), "rg", 1000)
	must(t, err)
	t.Logf("node1's allocation of 1000: %d", r1.Status)
	time.Sleep(time.Second)
	stop()
	px1.Undelay()
	px2.Restore()
	for range 5 {
		mustAllocate(t, c, l, n1, "rg", 5)
	}

	gaps := gapsOf(t, c, nodes, "rg")
	after, samples := inRecoveryGapsAfter(l, gaps)
	before := inRecoveryGaps(l, gaps) - after
	sizes, _ := gapSizes(gaps)
	t.Logf("%d numbers handed out; gaps %v; inside a recovery gap: %d handed out before it was recorded, %d after", l.Count(), sizes, before, after)
	if after > 0 {
		t.Errorf("%d numbers were handed out after the recovery gap that holds them was recorded, e.g. %v", after, samples)
	}
	// The state the reseed replaced was usable (this server's, of the store's
	// generation, whole), so where it stopped is known: the gap starts there, and
	// no number handed out before it was recorded lies in it either.
	if before > 0 {
		t.Errorf("%d numbers handed out before the recovery gap was recorded lie in it: the state it replaced was usable, and its final cursor known", before)
	}
	logReseeds(t, nodes)
}
