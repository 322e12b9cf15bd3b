// A restored state met while a lost call's memo is in place: the checkpoint
// that refutes a restored state must not wait for the memo to be settled.

package distributed_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/numberd/numberd/test/harness"
)

func stateKeys(dump harness.KeyDump, pool string) harness.KeyDump {
	var out harness.KeyDump
	for _, k := range dump {
		if k.Key == "numberd:{"+pool+"}:meta" || k.Key == "numberd:{"+pool+"}:seg" {
			out = append(out, k)
		}
	}
	return out
}

// TestRestoreWhileALostCallsMemoIsInPlace: a lost call's memo stays in place
// (node1's route back from Redis drops replies, so its resolver cannot read or
// close it) while node2 hands out numbers for 5 s; then the pool's meta and seg
// keys are restored from a dump taken before the lost call, and node3, which
// last saw the dumped version, meets the restored state. The checkpoint it is
// refused by is the store's cursor, which the memo must not hold back (the memo
// is accounted for by the checkpoint's held count instead): nothing may be
// handed out twice. The subtest "no lost call" runs the same steps without it.
func TestRestoreWhileALostCallsMemoIsInPlace(t *testing.T) {
	t.Run("a lost call's memo in place", func(t *testing.T) { restoreUnderMemo(t, true) })
	t.Run("no lost call", func(t *testing.T) { restoreUnderMemo(t, false) })
}

func restoreUnderMemo(t *testing.T, lose bool) {
	ctx := context.Background()
	rds := harness.StartRedis(t, "redis")
	rpx := harness.StartProxy(t, rds.Addr())
	dsn := mysqlDSN(t)
	n1 := startHoleNode(t, "node1", "redis://"+rpx.Addr()+"/0", dsn, holeTimeout)
	n2 := startHoleNode(t, "node2", "redis://"+rds.Addr()+"/0", dsn, holeTimeout)
	n3 := startHoleNode(t, "node3", "redis://"+rds.Addr()+"/0", dsn, holeTimeout)
	c, _, l := newPoolRun(t, n2, "rm")
	for range 3 {
		mustAllocate(t, c, l, n1, "rm", 5)
		mustAllocate(t, c, l, n2, "rm", 5)
	}
	mustAllocate(t, c, l, n3, "rm", 5)
	time.Sleep(1500 * time.Millisecond) // a checkpoint pass, and any lease extension
	all, err := rds.DumpKeys(ctx, "numberd:{rm}:*")
	must(t, err)
	dump := stateKeys(all, "rm")
	seg, _ := rds.Client().HGetAll(ctx, "numberd:{rm}:seg").Result()
	t.Logf("dumped %v; seg then: %v", dump.Names(), seg)

	rpx.DropReplies()
	if lose {
		nums, resp, err := c.Allocate(ctx, n1.URL(), "rm", 1)
		must(t, err)
		if resp.Status == http.StatusOK {
			t.Fatalf("allocate with node1's Redis replies dropped answered %v", nums)
		}
	}
	t.Logf("memos after the lost call: %v", memoFields(t, rds, "rm"))
	var byNode2 []string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		byNode2 = append(byNode2, mustAllocate(t, c, l, n2, "rm", 3)...)
		time.Sleep(150 * time.Millisecond)
	}
	t.Logf("node2 handed out %d numbers, %s..%s, over 5 s", len(byNode2), byNode2[0], byNode2[len(byNode2)-1])

	must(t, rds.RestoreKeys(ctx, dump))
	var dups []string
	for range 3 {
		nums, resp, err := c.Allocate(ctx, n3.URL(), "rm", 10)
		must(t, err)
		t.Logf("node3 after the restore: %s", resp)
		if resp.Status != http.StatusOK {
			continue
		}
		for _, n := range nums {
			if l.Has(n) {
				dups = append(dups, n)
			}
		}
		l.Record(n3.Name(), nums)
	}
	if len(dups) > 0 {
		t.Errorf("node3 handed out again %d numbers node2 had delivered more than two checkpoint passes before the restore: %s", len(dups), strings.Join(dups, " "))
	}
	rpx.KeepReplies()
}
