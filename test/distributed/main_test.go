// Package distributed holds the acceptance tests of numberd's distributed mode: real
// numberd processes sharing real redis-server topologies (one server, a replica,
// Sentinel, Cluster) and a MariaDB database, with a TCP proxy (toxiproxy) in front
// of the stores where a test cuts or redirects connections. Every test keeps a
// ledger of the numbers handed out and fails on a duplicate.
//
//	go test -race -count=1 ./test/distributed/
//	go test -run XXX -bench . -benchtime 5s ./test/distributed/
//
// The tests need NUMBERD_TEST_MYSQL_DSN (a MariaDB server where they create and drop
// databases of their own) and redis-server (NUMBERD_TEST_REDIS_SERVER or on PATH);
// `make test` provides both.
package distributed_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/numberd/numberd/internal/testenv"
	"github.com/numberd/numberd/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// digits is the width of every number in these tests: the e-invoice's 20.
const digits = 20

// span is a segment of 20-digit numbers prefix followed by lo..hi.
type span struct {
	prefix string
	lo, hi int64
}

func (s span) number(v int64) string {
	return fmt.Sprintf("%s%0*d", s.prefix, digits-len(s.prefix), v)
}
func (s span) start() string { return s.number(s.lo) }
func (s span) end() string   { return s.number(s.hi) }
func (s span) size() int64   { return s.hi - s.lo + 1 }

// contains reports whether n, a number of width digits, lies in s.
func (s span) contains(n string) bool { return n >= s.start() && n <= s.end() }

func totalSize(spans []span) int64 {
	var n int64
	for _, s := range spans {
		n += s.size()
	}
	return n
}

// startNodes starts n numberd nodes in distributed mode on redisURL and dsn.
func startNodes(t *testing.T, n int, redisURL, dsn string) []*harness.Node {
	t.Helper()
	nodes := make([]*harness.Node, n)
	for i := range nodes {
		nodes[i] = harness.StartNode(t, harness.NodeConfig{Name: fmt.Sprintf("node%d", i+1), RedisURL: redisURL, MySQLDSN: dsn,
			Args: []string{"--lease-max", strconv.Itoa(leaseMax)}})
	}
	return nodes
}

// mustPool creates pool through node and loads spans into it.
func mustPool(t *testing.T, c *harness.Client, node *harness.Node, pool string, spans ...span) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.PutPool(ctx, node.URL(), pool, digits); err != nil {
		t.Fatal(err)
	}
	for _, s := range spans {
		if _, err := c.LoadSegment(ctx, node.URL(), pool, s.start(), s.end()); err != nil {
			t.Fatal(err)
		}
	}
}

// mustAllocate allocates count numbers of pool on node, failing t on anything
// but 200, and records them in l.
func mustAllocate(t *testing.T, c *harness.Client, l *harness.Ledger, node *harness.Node, pool string, count int) []string {
	t.Helper()
	nums, r, err := c.Allocate(context.Background(), node.URL(), pool, count)
	if err != nil {
		t.Fatalf("allocate on %s: %v", node.Name(), err)
	}
	if r.Status != http.StatusOK {
		t.Fatalf("allocate on %s: %s", node.Name(), r)
	}
	l.Record(node.Name(), nums)
	return nums
}

// gapsOf lists pool's gaps through the first running node, failing t if none
// answers.
func gapsOf(t *testing.T, c *harness.Client, nodes []*harness.Node, pool string) []harness.Gap {
	t.Helper()
	var err error
	for _, n := range nodes {
		if !n.Running() {
			continue
		}
		var gaps []harness.Gap
		if gaps, err = c.Gaps(context.Background(), n.URL(), pool); err == nil {
			return gaps
		}
	}
	t.Fatalf("listing the gaps of %s: %v", pool, err)
	return nil
}

// inGap reports whether n lies in one of gaps.
func inGap(gaps []harness.Gap, n string) bool {
	for _, g := range gaps {
		if n >= g.Start && n <= g.End {
			return true
		}
	}
	return false
}

// gapAt is when the gap holding n was recorded, zero if none holds it.
func gapAt(gaps []harness.Gap, n string) time.Time {
	for _, g := range gaps {
		if n >= g.Start && n <= g.End {
			return g.At
		}
	}
	return time.Time{}
}

// checkGapCounts fails t if a gap's count is not end-start+1 or its range
// straddles no loaded span.
func checkGapCounts(t *testing.T, gaps []harness.Gap, spans []span) {
	t.Helper()
	for _, g := range gaps {
		var in *span
		for i := range spans {
			if spans[i].contains(g.Start) && spans[i].contains(g.End) {
				in = &spans[i]
			}
		}
		if in == nil {
			t.Errorf("gap %s..%s lies in no loaded segment", g.Start, g.End)
			continue
		}
		lo, _ := strconv.ParseInt(g.Start[len(in.prefix):], 10, 64)
		hi, _ := strconv.ParseInt(g.End[len(in.prefix):], 10, 64)
		if g.N() != hi-lo+1 {
			t.Errorf("gap %s..%s has count %s, want %d", g.Start, g.End, g.Count, hi-lo+1)
		}
	}
}

// gapSizes lists the gaps' counts and reasons, for logs.
func gapSizes(gaps []harness.Gap) (sizes []string, total int64) {
	for _, g := range gaps {
		sizes = append(sizes, g.Count+" "+g.Reason)
		total += g.N()
	}
	return sizes, total
}

// mysqlDSN is a fresh database on the test MariaDB server.
func mysqlDSN(t testing.TB) string { return testenv.MySQLDSN(t) }

// eventually polls cond every 20 ms until it holds, failing t after timeout.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, timeout, what, cond)
}
