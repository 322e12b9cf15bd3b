package alloc_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	testharness "github.com/numberd/numberd/test/harness" // harness here is embedded_test.go's type
)

// callers are the numbers of concurrent callers the engine benchmarks run with.
var callers = []int{1, 256}

// kinds are the two kinds of request the engine benchmarks compare: plain, and
// with an Idempotency-Key of its own, whose record must be kept durably.
var kinds = []string{"plain", "keyed"}

// benchAllocate allocates one number per operation from callers goroutines.
func benchAllocate(b *testing.B, eng interface {
	Allocate(context.Context, numberd.Request) (numberd.Allocation, error)
}, n int, kind string) {
	b.Helper()
	var seq atomic.Int64
	request := func() numberd.Request {
		r := numberd.Request{Pool: "p", Count: 1}
		if kind == "keyed" {
			r.Idempotency = &numberd.Idempotency{Scope: "bench", Key: strconv.FormatInt(seq.Add(1), 10)}
		}
		return r
	}
	b.ResetTimer()
	if n == 1 {
		for range b.N {
			if _, err := eng.Allocate(context.Background(), request()); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.SetParallelism(max(1, n/runtime.GOMAXPROCS(0)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := eng.Allocate(context.Background(), request()); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// forEachCase runs f once per number of callers and kind of request.
func forEachCase(b *testing.B, f func(b *testing.B, n int, kind string)) {
	for _, kind := range kinds {
		for _, n := range callers {
			b.Run(fmt.Sprintf("%s/callers=%d", kind, n), func(b *testing.B) { f(b, n, kind) })
		}
	}
}

func BenchmarkEmbeddedAllocate(b *testing.B) {
	forEachCase(b, func(b *testing.B, n int, kind string) {
		h := newHarness(b, alloc.Options{LeaseMax: 1_000_000})
		h.pool(b, "p", 20)
		h.segment(b, "p", "24442000000000000001", "24442999999999999999")
		benchAllocate(b, h.eng, n, kind)
	})
}

// BenchmarkRedisAllocate reports, besides the time per allocation, how many
// allocations one Redis round trip carries: the group commit's yield.
func BenchmarkRedisAllocate(b *testing.B) {
	forEachCase(b, func(b *testing.B, n int, kind string) {
		srv := testharness.StartRedis(b, "redis")
		c := newCluster(b, srv.Addr(), 1, alloc.Options{LeaseMax: 1_000_000})
		c.mustPool(b, "p", 20, [2]string{"24442000000000000001", "24442999999999999999"})
		if _, err := c.nodes[0].Allocate(context.Background(), numberd.Request{Pool: "p", Count: 1}); err != nil {
			b.Fatal(err)
		}
		calls := c.metrics[0].RedisCalls.WithLabelValues("allocate")
		before := testutil.ToFloat64(calls)
		benchAllocate(b, c.nodes[0], n, kind)
		b.StopTimer()
		if trips := testutil.ToFloat64(calls) - before; trips > 0 {
			b.ReportMetric(float64(b.N)/trips, "allocs/roundtrip")
		}
	})
}
