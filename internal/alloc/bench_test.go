package alloc_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/numberd/numberd/internal/alloc"
	testharness "github.com/numberd/numberd/test/harness" // harness here is embedded_test.go's type
)

// callers are the numbers of concurrent callers the engine benchmarks run with.
var callers = []int{1, 256}

// benchAllocate allocates one number per operation from callers goroutines.
func benchAllocate(b *testing.B, eng interface {
	Allocate(context.Context, alloc.Request) (alloc.Allocation, error)
}, n int) {
	b.Helper()
	b.ResetTimer()
	if n == 1 {
		for range b.N {
			if _, err := eng.Allocate(context.Background(), alloc.Request{Pool: "p", Count: 1}); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.SetParallelism(max(1, n/runtime.GOMAXPROCS(0)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := eng.Allocate(context.Background(), alloc.Request{Pool: "p", Count: 1}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkEmbeddedAllocate(b *testing.B) {
	for _, n := range callers {
		b.Run(fmt.Sprintf("callers=%d", n), func(b *testing.B) {
			h := newHarness(b, alloc.Options{LeaseMax: 1_000_000})
			h.pool(b, "p", 20)
			h.segment(b, "p", "24442000000000000001", "24442999999999999999")
			benchAllocate(b, h.eng, n)
		})
	}
}

// BenchmarkRedisAllocate reports, besides the time per allocation, how many
// allocations one Redis round trip carries: the group commit's yield.
func BenchmarkRedisAllocate(b *testing.B) {
	for _, n := range callers {
		b.Run(fmt.Sprintf("callers=%d", n), func(b *testing.B) {
			srv := testharness.StartRedis(b, "redis")
			c := newCluster(b, srv.Addr(), 1, alloc.Options{LeaseMax: 1_000_000})
			c.mustPool(b, "p", 20, [2]string{"24442000000000000001", "24442999999999999999"})
			if _, err := c.nodes[0].Allocate(context.Background(), alloc.Request{Pool: "p", Count: 1}); err != nil {
				b.Fatal(err)
			}
			calls := c.metrics[0].RedisCalls.WithLabelValues("allocate")
			before := testutil.ToFloat64(calls)
			benchAllocate(b, c.nodes[0], n)
			b.StopTimer()
			if trips := testutil.ToFloat64(calls) - before; trips > 0 {
				b.ReportMetric(float64(b.N)/trips, "allocs/roundtrip")
			}
		})
	}
}
