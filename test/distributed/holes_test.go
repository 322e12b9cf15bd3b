// The regression tests of the holes a fault hunt with real processes found in
// "never twice, every number accounted for": a Redis failed over and back, keys
// restored in place, Redis paused past the request timeout, one key lost,
// idempotency records lost with Redis, and a store rolled back. Each runs against
// throwaway Redis servers and a fresh MariaDB database. The tests are in
// holes_rollback_test.go, holes_pause_test.go and holes_loss_test.go; this file
// holds the rig they share.
//
//	GOTESTFLAGS='-run TestHole -v' make test
//	scripts/testenv.sh go test -race -count=1 -run TestHole -v ./test/distributed/

package distributed_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/numberd/numberd/test/harness"
)

// holeLease is the --lease-max of these tests' nodes: small, so that a stale lease
// is used up, and an extension meets the disagreement, within a few hundred
// numbers.
const holeLease = 500

// holeTimeout is --request-timeout where a test needs it short.
const holeTimeout = time.Second

// startHoleNodes starts n distributed nodes on redisURL and dsn (see
// startHoleNode), named node1, node2 …
func startHoleNodes(t *testing.T, n int, redisURL, dsn string, timeout time.Duration) []*harness.Node {
	t.Helper()
	var nodes []*harness.Node
	for i := range n {
		nodes = append(nodes, startHoleNode(t, fmt.Sprintf("node%d", i+1), redisURL, dsn, timeout))
	}
	return nodes
}

// startHoleNode starts a distributed node on redisURL and dsn with --lease-max
// holeLease and, unless timeout is 0, --request-timeout timeout.
func startHoleNode(t *testing.T, name, redisURL, dsn string, timeout time.Duration) *harness.Node {
	t.Helper()
	args := []string{"--lease-max", strconv.Itoa(holeLease)}
	if timeout > 0 {
		args = append(args, "--request-timeout", timeout.String())
	}
	return harness.StartNode(t, harness.NodeConfig{Name: name, RedisURL: redisURL, MySQLDSN: dsn, Args: args})
}

// holeRig is what each test here starts from: two nodes on a Redis server of the
// test's own and a fresh database, a client, a pool of one segment and a ledger.
type holeRig struct {
	rds   *harness.Redis
	dsn   string
	nodes []*harness.Node
	c     *harness.Client
	pool  string
	seg   span
	l     *harness.Ledger
}

// newHoleRig starts two nodes on rds (see startHoleNodes) and creates pool.
func newHoleRig(t *testing.T, rds *harness.Redis, pool string, timeout time.Duration) *holeRig {
	t.Helper()
	r := &holeRig{rds: rds, dsn: mysqlDSN(t), c: harness.NewClient(16), pool: pool, seg: span{"24442", 1, 1_000_000}, l: harness.NewLedger(t)}
	t.Cleanup(r.c.Close)
	r.nodes = startHoleNodes(t, 2, "redis://"+rds.Addr()+"/0", r.dsn, timeout)
	mustPool(t, r.c, r.nodes[0], pool, r.seg)
	return r
}

// load starts eight clients on both nodes and waits for their first 1000 numbers.
func (r *holeRig) load(t *testing.T) *load {
	t.Helper()
	ld := startLoad(t, r.c, r.l, loadOpts{pools: []string{r.pool}, nodes: r.nodes, workers: 8, maxCount: 5})
	ld.waitFor(1000, 30*time.Second, "the first 1000 numbers")
	return ld
}

// allocate allocates count numbers rounds times, on the nodes in turn.
func (r *holeRig) allocate(t *testing.T, rounds, count int) []string {
	t.Helper()
	var got []string
	for i := range rounds {
		got = append(got, mustAllocate(t, r.c, r.l, r.nodes[i%2], r.pool, count)...)
	}
	return got
}

// gaps lists the pool's gaps, checking their counts.
func (r *holeRig) gaps(t *testing.T) []harness.Gap {
	t.Helper()
	gaps := gapsOf(t, r.c, r.nodes, r.pool)
	checkGapCounts(t, gaps, []span{r.seg})
	return gaps
}

// must fails t on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// highest is the highest number in l.
func highest(l *harness.Ledger) string {
	nums := l.Numbers()
	if len(nums) == 0 {
		return ""
	}
	return nums[len(nums)-1]
}

// checkAbove fails t for each of nums at or below floor, or inside gaps: numbers
// handed out after Redis went back must come from above everything handed out
// before, and never from a gap.
func checkAbove(t *testing.T, nums []string, floor string, gaps []harness.Gap) {
	t.Helper()
	var below, gapped []string
	for _, n := range nums {
		if n <= floor {
			below = append(below, n)
		}
		if inGap(gaps, n) {
			gapped = append(gapped, n)
		}
	}
	if len(below) > 0 {
		t.Errorf("%d of the %d numbers handed out after the rollback are not above %s, handed out before it: %v",
			len(below), len(nums), floor, below[:min(len(below), 5)])
	}
	if len(gapped) > 0 {
		t.Errorf("%d of the %d numbers handed out after the rollback lie in a gap: %v", len(gapped), len(nums), gapped[:min(len(gapped), 5)])
	}
}
