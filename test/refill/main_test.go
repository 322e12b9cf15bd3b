// Package refill holds the acceptance tests of refilling pools from an upstream:
// real numberd processes in distributed mode on a throwaway Redis and a
// fresh MariaDB database, refilling from `numberd upstream-sim` run as a process
// (or, where an upstream must misbehave, from a fake in the test process), with
// short refill leases and scans so that takeovers happen within seconds.
//
//	go test -race -count=1 ./test/refill/
//
// The tests need NUMBERD_TEST_MYSQL_DSN and redis-server (NUMBERD_TEST_REDIS_SERVER
// or on PATH); `make test` provides both.
package refill_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/numberd/numberd/internal/testenv"
	"github.com/numberd/numberd/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

const (
	// digits is the width of every number in these tests: the e-invoice's 20.
	digits = 20
	// refillLease is --refill-lease: a holder that stops is replaced after it.
	refillLease = 2 * time.Second
	// refillScan is --refill-scan: how often every node looks at every pool.
	refillScan = 200 * time.Millisecond
	// upstreamName is the upstream the tests' pools refill from.
	upstreamName = "sim"
)

// cluster is numberd nodes sharing one Redis and one MySQL database, configured
// with the same upstreams.
type cluster struct {
	t     *testing.T
	nodes []*harness.Node
	c     *harness.Client
}

// startCluster starts n nodes in distributed mode whose config file names
// upstreams, with short refill leases and scans.
func startCluster(t *testing.T, n int, upstreams map[string]harness.UpstreamConfig) *cluster {
	t.Helper()
	rds := harness.StartRedis(t, "redis")
	dsn := testenv.MySQLDSN(t)
	conf := harness.WriteConfig(t, harness.FileConfig{Upstreams: upstreams})
	cl := &cluster{t: t, c: harness.NewClient(64)}
	t.Cleanup(cl.c.Close)
	for i := range n {
		cl.nodes = append(cl.nodes, harness.StartNode(t, harness.NodeConfig{
			Name: fmt.Sprintf("node%d", i+1), RedisURL: "redis://" + rds.Addr() + "/0", MySQLDSN: dsn,
			Args: []string{"--config", conf, "--refill-lease", refillLease.String(), "--refill-scan", refillScan.String()},
		}))
	}
	return cl
}

// startSim starts `numberd upstream-sim` for 20-digit numbers with more args.
func startSim(t *testing.T, args ...string) *harness.Sim {
	t.Helper()
	return harness.StartSim(t, harness.SimConfig{Args: append([]string{"--digits", strconv.Itoa(digits)}, args...)})
}

// simUpstream is the config of an upstream served by sim. The timeout is long
// enough for the slow simulators of the takeover tests.
func simUpstream(sim *harness.Sim) map[string]harness.UpstreamConfig {
	return map[string]harness.UpstreamConfig{upstreamName: {URL: sim.URL(), Timeout: 30 * time.Second}}
}

// running is the first node that runs and is not paused, failing t if none does.
func (cl *cluster) running() *harness.Node {
	cl.t.Helper()
	for _, n := range cl.nodes {
		if n.Running() && !n.Paused() {
			return n
		}
	}
	cl.t.Fatal("no node runs")
	return nil
}

// mustPool creates pool refilling from upstream (empty: none) with threshold and
// quantity.
func (cl *cluster) mustPool(pool, upstream string, threshold, quantity int64) {
	cl.t.Helper()
	spec := harness.PoolSpec{Digits: digits, RefillThreshold: &threshold}
	if upstream != "" {
		spec.Upstream = &upstream
	}
	if quantity > 0 {
		spec.RefillQuantity = &quantity
	}
	if _, err := cl.c.PutPoolSpec(context.Background(), cl.running().URL(), pool, spec); err != nil {
		cl.t.Fatal(err)
	}
}

// mustLoad loads start..end into pool by hand.
func (cl *cluster) mustLoad(pool, start, end string) {
	cl.t.Helper()
	if _, err := cl.c.LoadSegment(context.Background(), cl.running().URL(), pool, start, end); err != nil {
		cl.t.Fatal(err)
	}
}

// status reads pool's status through a running node.
func (cl *cluster) status(pool string) harness.PoolStatus {
	cl.t.Helper()
	st, err := cl.c.Pool(context.Background(), cl.running().URL(), pool)
	if err != nil {
		cl.t.Fatal(err)
	}
	return st
}

// segments lists pool's segments through a running node.
func (cl *cluster) segments(pool string) []harness.Segment {
	cl.t.Helper()
	segs, err := cl.c.Segments(context.Background(), cl.running().URL(), pool)
	if err != nil {
		cl.t.Fatal(err)
	}
	return segs
}

// metric sums a metric's samples over the running nodes that are not paused.
func (cl *cluster) metric(name string, labels ...string) float64 {
	cl.t.Helper()
	var sum float64
	for _, n := range cl.nodes {
		if n.Running() && !n.Paused() {
			sum += nodeMetric(cl.t, cl.c, n, name, labels...)
		}
	}
	return sum
}

func nodeMetric(t *testing.T, c *harness.Client, n *harness.Node, name string, labels ...string) float64 {
	t.Helper()
	m, err := c.Metrics(context.Background(), n.URL())
	if err != nil {
		t.Fatalf("metrics of %s: %v", n.Name(), err)
	}
	return m.Sum(name, labels...)
}

// bySource returns the segments whose source is source.
func bySource(segs []harness.Segment, source string) []harness.Segment {
	var out []harness.Segment
	for _, s := range segs {
		if s.Source == source {
			out = append(out, s)
		}
	}
	return out
}

// segmentsOf describes segments for a log line.
func segmentsOf(segs []harness.Segment) string {
	var parts []string
	for _, s := range segs {
		parts = append(parts, fmt.Sprintf("#%s %s..%s %s %s ywlsh=%q", s.ID, s.Start, s.End, s.State, s.Source, s.Ywlsh))
	}
	return strings.Join(parts, "; ")
}

// poolLogs returns the JSON log records of n whose msg is msg and whose pool is pool.
func poolLogs(n *harness.Node, msg, pool string) []map[string]any {
	var out []map[string]any
	for _, rec := range n.LogsMatching(msg) {
		if rec["pool"] == pool {
			out = append(out, rec)
		}
	}
	return out
}

// str is a log record's attribute as a string.
func str(rec map[string]any, key string) string {
	s, _ := rec[key].(string)
	return s
}

// holder waits until one of nodes logs "refill started" for pool, and returns
// that node and the download's ywlsh. It fails t if none does within timeout, or
// if two nodes started one.
func holder(t *testing.T, nodes []*harness.Node, pool string, timeout time.Duration) (*harness.Node, string) {
	t.Helper()
	var node *harness.Node
	var ywlsh string
	testenv.Eventually(t, timeout, "a node logs \"refill started\" for "+pool, func() bool {
		for _, n := range nodes {
			if recs := poolLogs(n, "refill started", pool); len(recs) > 0 {
				if node != nil && node != n {
					t.Fatalf("%s and %s both started a refill of %s", node.Name(), n.Name(), pool)
				}
				node, ywlsh = n, str(recs[0], "ywlsh")
			}
		}
		return node != nil
	})
	if ywlsh == "" {
		t.Fatalf("%s logged \"refill started\" for %s without a ywlsh", node.Name(), pool)
	}
	return node, ywlsh
}

// allocate asks node for count numbers of pool, failing t on a transport error.
func (cl *cluster) allocate(node *harness.Node, pool string, count int) ([]string, *harness.Response) {
	cl.t.Helper()
	nums, r, err := cl.c.Allocate(context.Background(), node.URL(), pool, count)
	if err != nil {
		cl.t.Fatalf("allocate %d of %s on %s: %v", count, pool, node.Name(), err)
	}
	return nums, r
}

// mustAllocate is allocate, failing t on anything but 200.
func (cl *cluster) mustAllocate(node *harness.Node, pool string, count int) []string {
	cl.t.Helper()
	nums, r := cl.allocate(node, pool, count)
	if r.Status != http.StatusOK {
		cl.t.Fatalf("allocate %d of %s on %s: %s", count, pool, node.Name(), r)
	}
	return nums
}

// number is the 20-digit number prefix followed by v.
func number(prefix string, v int64) string {
	return fmt.Sprintf("%s%0*d", prefix, digits-len(prefix), v)
}

// checkUpstreamSegments fails t unless every upstream segment has a ywlsh of its
// own and no two segments of segs overlap.
func checkUpstreamSegments(t *testing.T, segs []harness.Segment) {
	t.Helper()
	seen := map[string]string{}
	for _, s := range bySource(segs, "upstream") {
		if s.Ywlsh == "" {
			t.Errorf("upstream segment #%s %s..%s has no ywlsh", s.ID, s.Start, s.End)
			continue
		}
		if other, dup := seen[s.Ywlsh]; dup {
			t.Errorf("ywlsh %s stored twice: segments #%s and #%s", s.Ywlsh, other, s.ID)
		}
		seen[s.Ywlsh] = s.ID
	}
	sorted := slices.Clone(segs)
	slices.SortFunc(sorted, func(a, b harness.Segment) int { return strings.Compare(a.Start, b.Start) })
	for i := 1; i < len(sorted); i++ {
		if sorted[i].Start <= sorted[i-1].End {
			t.Errorf("segments overlap: #%s %s..%s and #%s %s..%s", sorted[i-1].ID, sorted[i-1].Start, sorted[i-1].End,
				sorted[i].ID, sorted[i].Start, sorted[i].End)
		}
	}
}
