package distributed_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/redis/go-redis/v9"

	"github.com/numberd/numberd/test/harness"
)

// benchClients is how many HTTP clients a benchmark runs at once:
// SetParallelism(benchClients/GOMAXPROCS).
const benchClients = 64

// runAllocations drives POST {base}/v1/pools/{pool}/numbers for one number with
// benchClients concurrent clients, b.N requests in all.
func runAllocations(b *testing.B, base, pool string) {
	c := harness.NewClient(2 * benchClients)
	defer c.Close()
	ctx := context.Background()
	// Warm the connections and the pool's state.
	for range 10 {
		if _, r, err := c.Allocate(ctx, base, pool, 1); err != nil || r.Status != http.StatusOK {
			b.Fatalf("warm-up allocation: %v %v", r, err)
		}
	}
	b.SetParallelism(max(1, benchClients/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, r, err := c.Allocate(ctx, base, pool, 1)
			if err != nil || r.Status != http.StatusOK {
				b.Errorf("allocate: %v %v", r, err)
				return
			}
		}
	})
	b.StopTimer()
}

// BenchmarkDistributedAllocateHTTP drives a numberd process in distributed mode
// (its own redis-server and a fresh MariaDB database) over HTTP, one number per
// request, with 64 concurrent clients. It reports how many allocations one Redis
// round trip of the allocate script served (the group commit's yield) and how many
// Redis script calls of any kind one allocation cost.
func BenchmarkDistributedAllocateHTTP(b *testing.B) {
	rds := harness.StartRedis(b, "redis")
	nodes := harness.StartNode(b, harness.NodeConfig{Name: "node1", RedisURL: "redis://" + rds.Addr() + "/0", MySQLDSN: mysqlDSN(b)})
	c := harness.NewClient(4)
	defer c.Close()
	ctx := context.Background()
	if _, err := c.PutPool(ctx, nodes.URL(), "bench", digits); err != nil {
		b.Fatal(err)
	}
	seg := span{"24442", 1, 999_999_999_999_999}
	if _, err := c.LoadSegment(ctx, nodes.URL(), "bench", seg.start(), seg.end()); err != nil {
		b.Fatal(err)
	}
	before, err := c.Metrics(ctx, nodes.URL())
	if err != nil {
		b.Fatal(err)
	}
	runAllocations(b, nodes.URL(), "bench")
	after, err := c.Metrics(ctx, nodes.URL())
	if err != nil {
		b.Fatal(err)
	}
	delta := func(name string, labels ...string) float64 {
		return after.Sum(name, labels...) - before.Sum(name, labels...)
	}
	allocs := delta("numberd_allocations_total", `outcome="ok"`)
	numbers := delta("numberd_numbers_issued_total")
	allocateCalls := delta("numberd_redis_calls_total", `script="allocate"`)
	allCalls := delta("numberd_redis_calls_total")
	if allocateCalls > 0 {
		b.ReportMetric(allocs/allocateCalls, "allocs/roundtrip")
	}
	if allocs > 0 {
		b.ReportMetric(allCalls/allocs, "redis-calls/alloc")
	}
	if numbers != allocs {
		b.Errorf("%v numbers issued for %v allocations of one number", numbers, allocs)
	}
}

// BenchmarkIncrPerRequestHTTP is the baseline: a minimal chi server in the test
// process that answers each POST with one Redis INCR on its own redis-server and a
// small JSON body, driven by the same client as BenchmarkDistributedAllocateHTTP.
func BenchmarkIncrPerRequestHTTP(b *testing.B) {
	rds := harness.StartRedis(b, "redis")
	rdb := redis.NewClient(&redis.Options{Addr: rds.Addr()})
	defer rdb.Close()
	r := chi.NewRouter()
	r.Post("/v1/pools/{pool}/numbers", func(w http.ResponseWriter, req *http.Request) {
		var body struct {
			Count int `json:"count"`
		}
		if err := json.NewDecoder(io.LimitReader(req.Body, 64<<10)).Decode(&body); err != nil || body.Count != 1 {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		pool := chi.URLParam(req, "pool")
		n, err := rdb.Incr(req.Context(), "bench:{"+pool+"}:counter").Result()
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"pool":%q,"numbers":["24442%015d"]}`+"\n", pool, n)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	runAllocations(b, "http://"+ln.Addr().String(), "bench")
}
