package distributed_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/numberd/numberd/test/harness"
)

// TestCluster runs two nodes on a three-master Redis Cluster (redis-cluster:// URL)
// with pools whose keys hash to slots of every master, and drains the pools with
// concurrent clients: each pool's numbers are handed out exactly once, with no gap,
// and each pool's state lives on the master that owns its hash slot.
func TestCluster(t *testing.T) {
	ctx := context.Background()
	cl := harness.StartCluster(t, 3)
	nodes := startNodes(t, 2, cl.URL(), mysqlDSN(t))
	c := harness.NewClient(32)
	defer c.Close()

	// Two pools per master, found by asking the cluster where their keys hash.
	perMaster := make([][]string, len(cl.Nodes))
	owner := map[string]int{}
	var pools []string
	for i := 0; len(pools) < 2*len(cl.Nodes) && i < 1000; i++ {
		pool := fmt.Sprintf("cl-%d", i)
		m, slot, err := cl.Owner(ctx, "numberd:{"+pool+"}:meta")
		if err != nil {
			t.Fatal(err)
		}
		if len(perMaster[m]) < 2 {
			perMaster[m] = append(perMaster[m], pool)
			owner[pool] = m
			pools = append(pools, pool)
			t.Logf("pool %s: slot %d, master %s", pool, slot, cl.Nodes[m].Addr())
		}
	}
	masters := 0
	for _, ps := range perMaster {
		if len(ps) > 0 {
			masters++
		}
	}
	if masters < 2 {
		t.Fatalf("pools on %d masters, want at least 2", masters)
	}
	// Every pool has the same numbers: a ledger per pool.
	spans := []span{{"24442", 1, 3000}, {"24442", 10_001, 12_000}}
	ledgers := map[string]*harness.Ledger{}
	for i, p := range pools {
		mustPool(t, c, nodes[i%len(nodes)], p, spans...)
		ledgers[p] = harness.NewLedger(t)
	}
	start := time.Now()
	var loads []*load
	for _, p := range pools {
		// Four clients per pool, two per node.
		loads = append(loads, startLoad(t, c, ledgers[p], loadOpts{pools: []string{p}, nodes: nodes, workers: 4, maxCount: 5, drain: true}))
	}
	for _, ld := range loads {
		ld.Wait(60 * time.Second)
	}
	elapsed := time.Since(start)
	if t.Failed() {
		return
	}
	total := totalSize(spans)
	handed := 0
	for _, p := range pools {
		l := ledgers[p]
		handed += l.Count()
		if int64(l.Count()) != total {
			t.Errorf("pool %s: %d numbers handed out, want all %d", p, l.Count(), total)
		}
		for _, s := range spans {
			for v := s.lo; v <= s.hi; v++ {
				if !l.Has(s.number(v)) {
					t.Errorf("pool %s: %s never handed out", p, s.number(v))
					break
				}
			}
		}
		if gaps := gapsOf(t, c, nodes, p); len(gaps) != 0 {
			t.Errorf("pool %s: gaps %+v without any loss of Redis state", p, gaps)
		}
		for _, n := range nodes {
			_, r, err := c.Allocate(ctx, n.URL(), p, 1)
			if err != nil || r.Status != http.StatusServiceUnavailable || r.Code() != "pool_exhausted" {
				t.Errorf("pool %s on %s after draining: %v %v, want 503 pool_exhausted", p, n.Name(), r, err)
			}
		}
		// The pool's keys live on the master that owns its slot.
		m := owner[p]
		if n, err := cl.Nodes[m].Client().Exists(ctx, "numberd:{"+p+"}:meta", "numberd:{"+p+"}:seg").Result(); err != nil || n != 2 {
			t.Errorf("pool %s: %d of its 2 keys on master %s (%v)", p, n, cl.Nodes[m].Addr(), err)
		}
	}
	t.Logf("cluster: %d pools on %d masters, %d numbers handed out in %.2fs (%.0f/s)",
		len(pools), masters, handed, elapsed.Seconds(), float64(handed)/elapsed.Seconds())
}
