package distributed_test

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/numberd/numberd/test/harness"
)

// failFast bounds how long numberd may take to answer 503 when a store is cut.
const failFast = 5 * time.Second

// readyz asks node's /readyz, returning the answer and how long it took.
func readyz(t *testing.T, c *harness.Client, node *harness.Node) (*harness.Response, time.Duration) {
	t.Helper()
	start := time.Now()
	r, err := c.Do(context.Background(), http.MethodGet, node.URL()+"/readyz", nil)
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	return r, time.Since(start)
}

// checkNotReady fails t unless r is a 503 problem naming store in "failing".
func checkNotReady(t *testing.T, r *harness.Response, store string) {
	t.Helper()
	if r.Status != http.StatusServiceUnavailable || r.ContentType() != "application/problem+json" {
		t.Errorf("GET /readyz: %s (%s), want 503 application/problem+json", r, r.ContentType())
		return
	}
	failing := r.Strings("failing")
	if !slices.Contains(failing, store) {
		t.Errorf("GET /readyz: failing = %v, want it to name %s", failing, store)
	}
}

// allocateTimed allocates count numbers on node and says how long the answer took.
func allocateTimed(t *testing.T, c *harness.Client, node *harness.Node, pool string, count int) ([]string, *harness.Response, time.Duration) {
	t.Helper()
	start := time.Now()
	nums, r, err := c.Allocate(context.Background(), node.URL(), pool, count)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	return nums, r, took
}

// checkUnavailable fails t unless r is 503 unavailable, answered within failFast.
func checkUnavailable(t *testing.T, r *harness.Response, took time.Duration, what string) {
	t.Helper()
	if r.Status != http.StatusServiceUnavailable || r.Code() != "unavailable" || r.ContentType() != "application/problem+json" {
		t.Errorf("%s: %s, want 503 problem+json with code unavailable", what, r)
	}
	if took >= failFast {
		t.Errorf("%s: answered after %v, want under %v", what, took, failFast)
	}
}

// TestRedisCut reaches Redis through a proxy and cuts it: /readyz names redis,
// an allocation answers 503 unavailable fast, and once the proxy is back the same
// node allocates again. Then the same with Redis hanging (a blackhole: the
// connections stay open and nothing comes back).
func TestRedisCut(t *testing.T) {
	rds := harness.StartRedis(t, "redis")
	proxy := harness.StartProxy(t, rds.Addr())
	nodes := startNodes(t, 1, "redis://"+proxy.Addr()+"/0", mysqlDSN(t))
	node := nodes[0]
	c := harness.NewClient(8)
	defer c.Close()
	mustPool(t, c, node, "cut", span{"24442", 1, 100_000})
	l := harness.NewLedger(t)
	for range 20 {
		mustAllocate(t, c, l, node, "cut", 5)
	}

	for _, mode := range []string{"cut", "blackhole"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "cut" {
				proxy.Cut()
			} else {
				proxy.Blackhole()
			}
			r, readyTook := readyz(t, c, node)
			checkNotReady(t, r, "redis")
			if readyTook >= failFast {
				t.Errorf("GET /readyz took %v, want under %v", readyTook, failFast)
			}
			var worst time.Duration
			for range 3 {
				_, r, took := allocateTimed(t, c, node, "cut", 1)
				checkUnavailable(t, r, took, "allocate with Redis "+mode)
				worst = max(worst, took)
			}
			if mode == "cut" {
				proxy.Restore()
			} else {
				proxy.Unblackhole()
			}
			restored := time.Now()
			var r2 *harness.Response
			eventually(t, 15*time.Second, "an allocation after Redis came back", func() bool {
				var nums []string
				nums, r2, _ = allocateTimed(t, c, node, "cut", 3)
				if r2.Status == http.StatusOK {
					l.Record(node.Name(), nums)
					return true
				}
				return false
			})
			back := time.Since(restored)
			if r, _ := readyz(t, c, node); r.Status != http.StatusOK {
				t.Errorf("GET /readyz after Redis came back: %s", r)
			}
			t.Logf("redis %s: /readyz 503 in %v; allocation 503 unavailable in at most %v; allocating again %v after the restore",
				mode, readyTook.Round(time.Millisecond), worst.Round(time.Millisecond), back.Round(time.Millisecond))
		})
	}
}

// TestMySQLCut reaches MySQL through a proxy and cuts it, refusing connections or
// swallowing them: /readyz names mysql, and allocations go on only while the
// reserved lease lasts, then answer 503 unavailable fast; once the proxy is back
// the same node allocates again.
func TestMySQLCut(t *testing.T) {
	t.Run("cut", func(t *testing.T) { mysqlCut(t, false) })
	t.Run("blackhole", func(t *testing.T) { mysqlCut(t, true) })
}

func mysqlCut(t *testing.T, blackhole bool) {
	rds := harness.StartRedis(t, "redis")
	cfg, err := mysql.ParseDSN(mysqlDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := harness.StartProxy(t, cfg.Addr)
	cfg.Addr = proxy.Addr()
	nodes := startNodes(t, 1, "redis://"+rds.Addr()+"/0", cfg.FormatDSN())
	node := nodes[0]
	c := harness.NewClient(8)
	defer c.Close()
	mustPool(t, c, node, "cut", span{"24442", 1, 1_000_000})
	l := harness.NewLedger(t)
	for range 20 {
		mustAllocate(t, c, l, node, "cut", 5)
	}

	if blackhole {
		proxy.Blackhole()
	} else {
		proxy.Cut()
	}
	r, readyTook := readyz(t, c, node)
	checkNotReady(t, r, "mysql")
	if readyTook >= failFast {
		t.Errorf("GET /readyz took %v, want under %v", readyTook, failFast)
	}
	// The lease reserved before the cut may still be handed out; no more.
	var fromLease int
	var worst time.Duration
	var r503 *harness.Response
	var took503 time.Duration
	for range 2 * leaseMax / 25 {
		nums, r, took := allocateTimed(t, c, node, "cut", 25)
		worst = max(worst, took)
		if r.Status == http.StatusOK {
			l.Record(node.Name(), nums)
			fromLease += len(nums)
			continue
		}
		r503, took503 = r, took
		break
	}
	if r503 == nil {
		t.Fatalf("allocations went on for %d numbers with MySQL cut", fromLease)
	}
	checkUnavailable(t, r503, took503, "allocate past the lease with MySQL cut")
	if fromLease > leaseMax {
		t.Errorf("%d numbers handed out with MySQL cut, more than the lease bound %d", fromLease, leaseMax)
	}
	_, r, took := allocateTimed(t, c, node, "cut", 1000)
	checkUnavailable(t, r, took, "allocate again with MySQL cut")

	if blackhole {
		proxy.Unblackhole()
	} else {
		proxy.Restore()
	}
	restored := time.Now()
	eventually(t, 15*time.Second, "an allocation after MySQL came back", func() bool {
		nums, r, _ := allocateTimed(t, c, node, "cut", 3)
		if r.Status == http.StatusOK {
			l.Record(node.Name(), nums)
			return true
		}
		return false
	})
	back := time.Since(restored)
	if r, _ := readyz(t, c, node); r.Status != http.StatusOK {
		t.Errorf("GET /readyz after MySQL came back: %s", r)
	}
	if gaps := gapsOf(t, c, nodes, "cut"); len(gaps) != 0 {
		t.Errorf("gaps %+v after a MySQL cut, want none", gaps)
	}
	t.Logf("mysql %s: /readyz 503 in %v; %d numbers handed out from the lease, then 503 unavailable in %v "+
		"(slowest answer meanwhile %v); allocating again %v after the restore",
		t.Name(), readyTook.Round(time.Millisecond), fromLease, took503.Round(time.Millisecond), worst.Round(time.Millisecond),
		back.Round(time.Millisecond))
}
