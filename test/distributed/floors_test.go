package distributed_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/numberd/numberd/test/harness"
)

// floorRig is two nodes sharing one Redis and one database, node2's way to the
// database through a proxy, and a pool both have served: what the tests of a
// key restore met by a node that cannot trust its floors start from.
type floorRig struct {
	rds    *harness.Redis
	px2    *harness.Proxy
	n1, n2 *harness.Node
	c      *harness.Client
	seg    span
	l      *harness.Ledger
	pool   string
}

func newFloorRig(t *testing.T, pool string, extra ...string) *floorRig {
	r := &floorRig{rds: harness.StartRedis(t, "redis"), pool: pool}
	dsn := mysqlDSN(t)
	var dsn2 string
	r.px2, dsn2 = proxiedDSN(t, dsn)
	args := append([]string{"--lease-max", strconv.Itoa(holeLease)}, extra...)
	url := "redis://" + r.rds.Addr() + "/0"
	r.n1 = harness.StartNode(t, harness.NodeConfig{Name: "node1", RedisURL: url, MySQLDSN: dsn, Args: args})
	r.n2 = harness.StartNode(t, harness.NodeConfig{Name: "node2", RedisURL: url, MySQLDSN: dsn2, Args: args})
	r.c, r.seg, r.l = newPoolRun(t, r.n1, pool)
	for range 4 {
		mustAllocate(t, r.c, r.l, r.n1, pool, 5)
		mustAllocate(t, r.c, r.l, r.n2, pool, 5)
	}
	return r
}

// dump takes the pool's keys as they are now.
func (r *floorRig) dump(t *testing.T) harness.KeyDump {
	dump, err := r.rds.DumpKeys(context.Background(), "numberd:{"+r.pool+"}:*")
	must(t, err)
	return dump
}

// goOnThenRestore has node1 hand out 50 numbers within the lease, waits for its
// checkpoint, and writes dump back; it returns the highest number handed out.
func (r *floorRig) goOnThenRestore(t *testing.T, dump harness.KeyDump) string {
	for range 10 {
		mustAllocate(t, r.c, r.l, r.n1, r.pool, 5)
	}
	floor := highest(r.l)
	time.Sleep(3 * time.Second) // node1's checkpoint holds its cursor, twice over
	must(t, r.rds.RestoreKeys(context.Background(), dump))
	return floor
}

// node2Allocates asks node2 for five numbers ten times, and returns what it got.
func (r *floorRig) node2Allocates(t *testing.T) []string {
	var after []string
	for range 10 {
		nums, resp, err := r.c.Allocate(context.Background(), r.n2.URL(), r.pool, 5)
		must(t, err)
		if resp.Status != http.StatusOK {
			t.Logf("node2 after the restore: %s", resp)
			continue
		}
		r.l.Record(r.n2.Name(), nums)
		after = append(after, nums...)
	}
	return after
}

// check fails t if a number handed out after the restore is at or below floor
// outside a gap, or if the gaps do not add up.
func (r *floorRig) check(t *testing.T, after []string, floor string) {
	nodes := []*harness.Node{r.n1, r.n2}
	gaps := gapsOf(t, r.c, nodes, r.pool)
	checkGapCounts(t, gaps, []span{r.seg})
	checkAbove(t, after, floor, gaps)
	logReseeds(t, nodes)
}

// TestRestoredStateMetByAPausedNodeWithASlowStore: node2 is paused (SIGSTOP)
// while node1 goes on allocating within the lease, the store checkpoints node1's
// cursor, and the pool's keys are written back from a dump taken before
// (RESTORE … REPLACE). node2 resumes with its path to MySQL slow (its replies
// held back a second: a busy database, a congested link; nothing is cut). Its
// floors are stale, and reading them again takes longer than it is willing to
// wait: it must not hand out the restored state's numbers, which node1 handed
// out already. The restore comes well past the two checkpoint passes the design
// calls undetectable.
func TestRestoredStateMetByAPausedNodeWithASlowStore(t *testing.T) {
	r := newFloorRig(t, "sf")
	r.n2.Pause()
	floor := r.goOnThenRestore(t, r.dump(t))
	r.px2.Delay(time.Second)
	r.n2.Resume()
	after := r.node2Allocates(t)
	r.px2.Undelay()
	r.check(t, after, floor)
}

// TestRestoredStateServedByARequestPausedInFlight: node2 is paused (SIGSTOP)
// while it answers a keyed request, waiting for the store's record of the key
// (its path to MySQL takes 100 ms each way: less than it waits to read stale
// floors). Meanwhile node1 goes on within the lease, its cursor is checkpointed,
// and the pool's keys are written back from a dump taken before. node2 resumes
// within the request's timeout: the request it was answering must not hand out
// the restored state's numbers, which node1 handed out already.
func TestRestoredStateServedByARequestPausedInFlight(t *testing.T) {
	r := newFloorRig(t, "pf", "--request-timeout", "10s")
	dump := r.dump(t)
	r.px2.Delay(100 * time.Millisecond)
	type answer struct {
		resp *harness.Response
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := r.c.Do(context.Background(), http.MethodPost, r.n2.URL()+"/v1/pools/pf/numbers", map[string]int{"count": 5}, "Idempotency-Key", "pf-key")
		done <- answer{resp, err}
	}()
	time.Sleep(40 * time.Millisecond)
	r.n2.Pause()
	floor := r.goOnThenRestore(t, dump)
	r.n2.Resume()
	a := <-done
	must(t, a.err)
	r.px2.Undelay()
	var after []string
	if a.resp.Status == http.StatusOK {
		after = a.resp.Strings("numbers")
		r.l.Record(r.n2.Name()+" pf-key", after)
	}
	t.Logf("node2's request paused in flight: %s", a.resp)
	r.check(t, append(after, r.node2Allocates(t)...), floor)
}

// TestRestoredStateMetByANodeCutOffFromTheStore: node2's path to MySQL is cut
// (nothing is paused) while node1 goes on allocating within the lease, the store
// checkpoints node1's cursor, and the pool's keys are written back from a dump
// taken before. node2 serves on the leases Redis holds, as a store outage
// allows, but its floors are seconds old and it cannot read them again: it must
// not hand out the restored state's numbers, which node1 handed out already.
func TestRestoredStateMetByANodeCutOffFromTheStore(t *testing.T) {
	r := newFloorRig(t, "sc")
	r.px2.Cut()
	floor := r.goOnThenRestore(t, r.dump(t))
	after := r.node2Allocates(t)
	r.px2.Restore()
	r.check(t, after, floor)
}
