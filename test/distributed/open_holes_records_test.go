//go:build openholes

// Holes in the accounting of lost calls still open, each with its failing test:
// make test does not build them. Run them with
//
//	scripts/testenv.sh go test -tags openholes -race -run TestHole ./test/distributed/
//
// When a hole is closed, move its test to a file make test builds.

package distributed_test

import (
	"context"
	"database/sql"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/numberd/numberd/test/harness"
)

// TestHoleReplayAbandonedThenKeptFresh: two requests with one Idempotency-Key
// race. A (node1) takes numbers N; B (node2) arrives before A's record is in the
// store and Redis replays N to it; B's durable record cannot be written in time
// (node2's store is slow), so B answers 503 and node2's resolver offers the
// store an abandoned record of the key, which wins (no record yet), and so
// records N as an abandoned gap (resolver.settle, the c.record case). A's own
// record is written after that: it is Fresh (A took N itself), and
// Records.Keep lets a fresh record take the place of an abandoned one; A is
// answered N. N is delivered, is the key's answer for every retry, and lies in
// an abandoned gap. The fresh rule assumes a fresh record's numbers are not the
// ones the abandoned record gave up; a replay makes them the same.
//
// node1's store is slowed (its replies delayed 800 ms) and another keyed request
// A0 is sent just before A, so that A's record waits behind A0's in node1's
// batch of records while B runs and is settled.
func TestHoleReplayAbandonedThenKeptFresh(t *testing.T) {
	ctx := context.Background()
	rds := harness.StartRedis(t, "redis")
	dsn := mysqlDSN(t)
	mpx1, dsn1 := proxiedDSN(t, dsn)
	mpx2, dsn2 := proxiedDSN(t, dsn)
	n1 := harness.StartNode(t, harness.NodeConfig{Name: "node1", RedisURL: "redis://" + rds.Addr() + "/0", MySQLDSN: dsn1,
		Args: []string{"--lease-max", "500", "--request-timeout", "40s"}})
	n2 := harness.StartNode(t, harness.NodeConfig{Name: "node2", RedisURL: "redis://" + rds.Addr() + "/0", MySQLDSN: dsn2,
		Args: []string{"--lease-max", "500", "--request-timeout", "1500ms"}})
	c, seg, l := newPoolRun(t, n1, "ik")
	c.HTTP.Timeout = 60 * time.Second
	for range 3 {
		mustAllocate(t, c, l, n1, "ik", 5)
		mustAllocate(t, c, l, n2, "ik", 5)
	}
	keyed := func(n *harness.Node, key string) *harness.Response {
		resp, err := c.Do(ctx, http.MethodPost, n.URL()+"/v1/pools/ik/numbers", map[string]int{"count": 3}, "Idempotency-Key", key)
		must(t, err)
		return resp
	}
	mustAllocate(t, c, l, n1, "ik", 1) // node1's store connections in use lately
	mpx1.Delay(800 * time.Millisecond)
	type answer struct {
		resp *harness.Response
		at   time.Time
	}
	a0, a := make(chan answer, 1), make(chan answer, 1)
	go func() { r := keyed(n1, "k-zero"); a0 <- answer{r, time.Now()} }()
	time.Sleep(300 * time.Millisecond)
	go func() { r := keyed(n1, "k-main"); a <- answer{r, time.Now()} }()
	eventually(t, 15*time.Second, "A's numbers taken in Redis", func() bool {
		keys, err := rds.Keys(ctx, "numberd:{ik}:idem:*k-main")
		return err == nil && len(keys) > 0
	})
	t.Logf("A took its numbers in Redis")
	mpx2.Delay(500 * time.Millisecond)
	b := keyed(n2, "k-main")
	mpx2.Undelay()
	t.Logf("B on node2: %s", b)
	if b.Status == http.StatusOK {
		l.Record("node2 k-main", b.Strings("numbers"))
		t.Skipf("B was answered: the race was not met")
	}
	ra0, ra := <-a0, <-a
	t.Logf("A0 on node1: %s", ra0.resp)
	t.Logf("A on node1: %s", ra.resp)
	mpx1.Undelay()
	if ra0.resp.Status == http.StatusOK {
		l.Record("node1 k-zero", ra0.resp.Strings("numbers"))
	}
	if ra.resp.Status != http.StatusOK {
		t.Skipf("A was not answered: the race was not met")
	}
	got := ra.resp.Strings("numbers")
	l.Record("node1 k-main", got)
	time.Sleep(2 * time.Second)
	gaps := gapsOf(t, c, []*harness.Node{n1, n2}, "ik")
	for _, num := range got {
		for _, g := range gaps {
			if num >= g.Start && num <= g.End {
				t.Errorf("number %s, answered to key k-main, lies in a gap %s..%s (%s)", num, g.Start, g.End, g.Reason)
			}
		}
	}
	retry := keyed(n2, "k-main")
	t.Logf("retry of k-main on node2: %s", retry)
	missing, _ := unaccounted(t, c, []*harness.Node{n1, n2}, n2, "ik", []span{seg}, l, 5*time.Second)
	if len(missing) > 0 {
		t.Errorf("%d numbers below the cursor reached no caller and lie in no gap: %v", len(missing), missing)
	}
	for _, line := range n2.Logs() {
		if strings.Contains(line, "settled") || strings.Contains(line, "request failed") {
			t.Logf("node2: %s", line)
		}
	}
}

// TestHoleTrimDeletesAnOlderReseedsGap: a reseed's trim (Generations.TrimRecovery)
// deletes every trimmable recovery gap inside the range of the gaps the reseed
// recorded, not only its own. With the store rolled back (segments' next and
// reserved_hi written back to a backup, the gaps left as they are: the model of
// TestHoleStoreRolledBack), a usable reseed's gap starts at the old cursor, below
// an older reseed's recovery gap; recorded around it, its range spans it, and the
// trim deletes the older gap whole. The numbers the older reseed skipped and no
// state handed out are then in no gap.
//
// Steps: backup of the store's marks; the seg key deleted and node1 reseeds
// (recovery gap G1, as wide as the lease the lost state held); node2 allocates
// past an extension; the store's marks are written back to the backup; node2's
// next extension finds the lease disagreeing and reseeds the usable state, trims
// its gaps, and G1 with them.
func TestHoleTrimDeletesAnOlderReseedsGap(t *testing.T) {
	ctx := context.Background()
	r := newHoleRig(t, harness.StartRedis(t, "redis"), "tg", 0)
	db, err := sql.Open("mysql", r.dsn)
	must(t, err)
	defer db.Close()
	for range 5 {
		mustAllocate(t, r.c, r.l, r.nodes[0], "tg", 5)
		mustAllocate(t, r.c, r.l, r.nodes[1], "tg", 5)
	}
	time.Sleep(1500 * time.Millisecond)
	var id, reservedHi, next int64
	must(t, db.QueryRowContext(ctx, "SELECT id, reserved_hi, next FROM segments WHERE pool = ?", "tg").Scan(&id, &reservedHi, &next))
	t.Logf("store's marks backed up: reserved_hi %d, next %d", reservedHi, next)
	for range 5 {
		mustAllocate(t, r.c, r.l, r.nodes[0], "tg", 5)
	}
	time.Sleep(1500 * time.Millisecond) // a checkpoint above the backup's
	n, err := r.rds.DelKeys(ctx, "numberd:{tg}:seg")
	must(t, err)
	if n != 1 {
		t.Fatalf("deleted %d seg keys", n)
	}
	mustAllocate(t, r.c, r.l, r.nodes[0], "tg", 5) // reseeds
	g1 := gapsOf(t, r.c, r.nodes, "tg")
	t.Logf("gaps after the first reseed: %v", g1)
	for range 60 {
		mustAllocate(t, r.c, r.l, r.nodes[1], "tg", 5)
	}
	_, err = db.ExecContext(ctx, "UPDATE segments SET reserved_hi = ?, next = ? WHERE id = ?", reservedHi, next, id)
	must(t, err)
	eventually(t, 15*time.Second, "node2's reseed of the usable state", func() bool {
		mustAllocate(t, r.c, r.l, r.nodes[1], "tg", 20)
		for _, line := range r.nodes[1].Logs() {
			if strings.Contains(line, "went back in time") {
				t.Logf("node2: %s", line)
				return true
			}
		}
		return false
	})
	missing, gaps := unaccounted(t, r.c, r.nodes, r.nodes[1], "tg", []span{r.seg}, r.l, 5*time.Second)
	t.Logf("gaps at the end: %v", gaps)
	if len(missing) > 0 {
		t.Errorf("%d numbers below the cursor reached no caller and lie in no gap: %s .. %s", len(missing), missing[0], missing[len(missing)-1])
	}
}
