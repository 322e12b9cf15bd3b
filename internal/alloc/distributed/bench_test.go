package distributed_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/alloc/alloctest"
	testharness "github.com/numberd/numberd/test/harness"
)

// BenchmarkRedisAllocate reports, besides the time per allocation, how many
// allocations one Redis round trip carries: the group commit's yield.
func BenchmarkRedisAllocate(b *testing.B) {
	alloctest.ForEachCase(b, func(b *testing.B, n int, kind string) {
		srv := testharness.StartRedis(b, "redis")
		c := newCluster(b, srv.Addr(), 1, alloc.Options{LeaseMax: 1_000_000})
		c.mustPool(b, "p", 20, [2]string{"24442000000000000001", "24442999999999999999"})
		if _, err := c.nodes[0].Allocate(context.Background(), numberd.Request{Pool: "p", Count: 1}); err != nil {
			b.Fatal(err)
		}
		calls := c.metrics[0].RedisCalls.WithLabelValues("allocate")
		before := testutil.ToFloat64(calls)
		alloctest.BenchAllocate(b, c.nodes[0], n, kind)
		b.StopTimer()
		if trips := testutil.ToFloat64(calls) - before; trips > 0 {
			b.ReportMetric(float64(b.N)/trips, "allocs/roundtrip")
		}
	})
}
