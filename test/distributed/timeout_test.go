package distributed_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/numberd/numberd/test/harness"
)

// requestTimeout is the --request-timeout of TestRequestTimeoutKept's node, and
// answerBound the longest any answer may take with a store gone: the timeout and
// a tenth for the answer's way back.
const (
	requestTimeout = 2 * time.Second
	answerBound    = requestTimeout + requestTimeout/10
)

// TestRequestTimeoutKept cuts or blackholes Redis or MySQL under a node running
// with --request-timeout 2s: every allocation (from a pool the node has served
// and from one it has not seen yet), pool status and segment load must answer
// within 2.2 s, and what does not succeed must be 503 unavailable. A blackhole is
// the hard case: connections stay open and nothing comes back, so only the
// node's own deadlines end the wait.
func TestRequestTimeoutKept(t *testing.T) {
	for _, down := range []string{"mysql", "redis"} {
		for _, mode := range []string{"cut", "blackhole"} {
			t.Run(down+"/"+mode, func(t *testing.T) { requestTimeoutKept(t, down, mode == "blackhole") })
		}
	}
}

func requestTimeoutKept(t *testing.T, down string, blackhole bool) {
	rds := harness.StartRedis(t, "redis")
	dsn := mysqlDSN(t)
	redisURL, nodeDSN := "redis://"+rds.Addr()+"/0", dsn
	var proxy *harness.Proxy
	if down == "redis" {
		proxy = harness.StartProxy(t, rds.Addr())
		redisURL = "redis://" + proxy.Addr() + "/0"
	} else {
		cfg, err := mysql.ParseDSN(dsn)
		if err != nil {
			t.Fatal(err)
		}
		proxy = harness.StartProxy(t, cfg.Addr)
		cfg.Addr = proxy.Addr()
		nodeDSN = cfg.FormatDSN()
	}
	node := harness.StartNode(t, harness.NodeConfig{Name: "node", RedisURL: redisURL, MySQLDSN: nodeDSN,
		Args: []string{"--request-timeout", requestTimeout.String(), "--lease-max", strconv.Itoa(leaseMax)}})
	// admin reaches both stores directly: it makes the pool node has never seen.
	admin := harness.StartNode(t, harness.NodeConfig{Name: "admin", RedisURL: "redis://" + rds.Addr() + "/0", MySQLDSN: dsn})
	c := harness.NewClient(8)
	defer c.Close()
	mustPool(t, c, node, "warm", span{"24442", 1, 1_000_000})
	mustPool(t, c, admin, "cold", span{"24443", 1, 1_000_000})
	l := harness.NewLedger(t)
	for range 5 {
		mustAllocate(t, c, l, node, "warm", 10)
	}

	if blackhole {
		proxy.Blackhole()
	} else {
		proxy.Cut()
	}
	ctx := context.Background()
	// timed makes one call and fails t unless it answered within answerBound,
	// with 503 unavailable unless ok is true and it succeeded.
	timed := func(what string, okStatus int, call func() (*harness.Response, error)) *harness.Response {
		t.Helper()
		start := time.Now()
		r, err := call()
		took := time.Since(start)
		if r == nil {
			t.Fatalf("%s: %v", what, err)
		}
		if took > answerBound {
			t.Errorf("%s with %s down: answered %d after %v, want within %v", what, down, r.Status, took.Round(time.Millisecond), answerBound)
		}
		if r.Status != okStatus && (r.Status != http.StatusServiceUnavailable || r.Code() != "unavailable" || r.ContentType() != "application/problem+json") {
			t.Errorf("%s with %s down: %s, want 503 problem+json with code unavailable", what, down, r)
		}
		t.Logf("%s with %s down: %d in %v", what, down, r.Status, took.Round(time.Millisecond))
		return r
	}
	allocate := func(pool string, count int) func() (*harness.Response, error) {
		return func() (*harness.Response, error) {
			nums, r, err := c.Allocate(ctx, node.URL(), pool, count)
			if r != nil && r.Status == http.StatusOK {
				l.Record(node.Name(), nums)
			}
			return r, err
		}
	}

	// With MySQL down the lease reserved before may still be handed out, and
	// nothing more: drained with ever smaller requests, the pool answers 503.
	// Redis alone cannot hand out anything.
	ok := 0
	if down == "mysql" {
		ok = http.StatusOK
	}
	served := 0
	for _, count := range []int{500, 50, 1} {
		for range leaseMax/count + 2 {
			if r := timed("allocate "+strconv.Itoa(count)+" from a pool the node serves", ok, allocate("warm", count)); r.Status != http.StatusOK {
				break
			}
			if served += count; served > leaseMax {
				t.Fatalf("%d numbers handed out with %s down, more than the lease bound %d", served, down, leaseMax)
			}
		}
	}
	timed("allocate 1 from a pool the node serves, its lease spent", 0, allocate("warm", 1))
	timed("allocate 1 from a pool the node has not seen", 0, allocate("cold", 1))
	timed("pool status", http.StatusOK, func() (*harness.Response, error) {
		return c.Do(ctx, http.MethodGet, node.URL()+"/v1/pools/warm", nil)
	})
	// With Redis down the store still takes the segment: Redis learns of it at
	// the next extension.
	loaded := 0
	if down == "redis" {
		loaded = http.StatusCreated
	}
	load := span{"24444", 1, 1000}
	timed("segment load", loaded, func() (*harness.Response, error) {
		return c.Do(ctx, http.MethodPost, node.URL()+"/v1/pools/warm/segments", map[string]string{"start": load.start(), "end": load.end()})
	})
}
