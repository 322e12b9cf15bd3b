package distributed_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/numberd/numberd/test/harness"
)

// TestHoleFailoverAndBack (finding 1): Redis fails over to a replica that stopped
// following (B, REPLICAOF NO ONE) while the nodes go on allocating on A, then A
// follows B and is promoted again (what Sentinel does failing over and back). A's
// run id is unchanged but its data is B's older copy, under a new replication id:
// the pool must be reseeded above everything handed out, not serve its old lease
// again.
func TestHoleFailoverAndBack(t *testing.T) {
	ctx := context.Background()
	a := harness.StartRedis(t, "a", "--repl-diskless-sync-delay", "0")
	b := harness.StartReplica(t, "b", a)
	r := newHoleRig(t, a, "fb", 0)
	onCopy := len(r.allocate(t, 10, 5))
	runID, _ := a.RunID(ctx)
	replID, _ := a.ReplicationID(ctx)
	var onA int
	must(t, harness.FailoverAndBack(ctx, a, b, func() error { onA = len(r.allocate(t, 20, 5)); return nil }))
	runAfter, _ := a.RunID(ctx)
	replAfter, _ := a.ReplicationID(ctx)
	t.Logf("A's run id %s → %s, replication id %s → %s", runID, runAfter, replID, replAfter)

	floor, dupsBefore := highest(r.l), r.l.Duplicates()
	after := r.allocate(t, 40, 5)
	checkAbove(t, after, floor, r.gaps(t))
	t.Logf("failover and back: %d numbers handed out when B was promoted, %d more on A after it; "+
		"after A went back to B's copy: %d numbers, %d of them handed out again",
		onCopy, onA, len(after), r.l.Duplicates()-dupsBefore)
	logReseeds(t, r.nodes)
}

// TestHoleKeyRestore (finding 2): every key of a pool is dumped (DUMP) under load
// from two nodes, the load goes on past any lease the dump held, and the dump is
// written back into the same live server (RESTORE … REPLACE): no id changes, the
// counters go back. No number may be handed out again, whether one node or both
// allocate after the restore.
func TestHoleKeyRestore(t *testing.T) {
	t.Run("one node after", func(t *testing.T) { keyRestore(t, false) })
	t.Run("load from both after", func(t *testing.T) { keyRestore(t, true) })
}

func keyRestore(t *testing.T, loadAfter bool) {
	ctx := context.Background()
	r := newHoleRig(t, harness.StartRedis(t, "redis"), "kr", 0)
	ld := r.load(t)
	dump, err := r.rds.DumpKeys(ctx, "numberd:{kr}:*")
	must(t, err)
	atDump := r.l.Count()
	ld.waitFor(atDump+3*holeLease, 30*time.Second, "numbers past the dump's lease")
	if !loadAfter {
		ld.Stop()
	}
	floor, dupsBefore, before := highest(r.l), r.l.Duplicates(), r.l.Count()
	must(t, r.rds.RestoreKeys(ctx, dump))
	var after []string
	if loadAfter {
		ld.waitFor(before+3*holeLease, 30*time.Second, "numbers after the restore")
		ld.Stop()
	} else {
		for range 100 {
			after = append(after, mustAllocate(t, r.c, r.l, r.nodes[0], "kr", 5)...)
		}
	}
	checkAbove(t, after, floor, r.gaps(t))
	t.Logf("key restore: dumped %d keys %v at %d numbers; restored at %d; %d numbers handed out after the restore, %d of them again; 503 unavailable %d",
		len(dump), dumpKinds(dump), atDump, before, r.l.Count()-before+r.l.Duplicates()-dupsBefore, r.l.Duplicates()-dupsBefore, ld.unavailable.Load())
	logReseeds(t, r.nodes)
}

// dumpKinds counts a dump's keys by kind (meta, seg, memo, idem, lock), for logs.
func dumpKinds(d harness.KeyDump) map[string]int {
	out := map[string]int{}
	for _, k := range d.Names() {
		_, rest, _ := strings.Cut(k, "}:")
		kind, _, _ := strings.Cut(rest, ":")
		out[kind]++
	}
	return out
}

// TestHoleStoreRolledBack (finding 6): MySQL is restored from a backup (the
// segments' reserved_hi and next written back to what they were earlier) while
// Redis holds cursors above them. The nodes must not reseed below what Redis
// shows: no number may be handed out again.
func TestHoleStoreRolledBack(t *testing.T) {
	ctx := context.Background()
	r := newHoleRig(t, harness.StartRedis(t, "redis"), "rb", 0)
	db, err := sql.Open("mysql", r.dsn)
	must(t, err)
	defer db.Close()
	ld := r.load(t)

	type marks struct{ id, reservedHi, next int64 }
	var backup []marks
	rows, err := db.QueryContext(ctx, "SELECT id, reserved_hi, next FROM segments WHERE pool = ?", "rb")
	must(t, err)
	for rows.Next() {
		var m marks
		must(t, rows.Scan(&m.id, &m.reservedHi, &m.next))
		backup = append(backup, m)
	}
	must(t, rows.Err())
	atBackup := r.l.Count()
	ld.waitFor(atBackup+3*holeLease, 30*time.Second, "numbers past the backup's marks")

	floor, dupsBefore, before := highest(r.l), r.l.Duplicates(), r.l.Count()
	for _, m := range backup {
		if _, err := db.ExecContext(ctx, "UPDATE segments SET reserved_hi = ?, next = ? WHERE id = ?", m.reservedHi, m.next, m.id); err != nil {
			t.Fatal(err)
		}
	}
	ld.waitFor(before+4*holeLease, 30*time.Second, "numbers after the store was rolled back")
	ld.Stop()
	gaps := r.gaps(t)
	t.Logf("store rolled back to its marks %+v (taken at %d numbers) at %d numbers (highest %s); %d numbers handed out after, %d of them again; gaps %d",
		backup, atBackup, before, floor, r.l.Count()-before+r.l.Duplicates()-dupsBefore, r.l.Duplicates()-dupsBefore, len(gaps))
	logReseeds(t, r.nodes)
}
