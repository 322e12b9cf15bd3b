package embedded_test

import (
	"testing"

	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/alloc/alloctest"
)

func BenchmarkEmbeddedAllocate(b *testing.B) {
	alloctest.ForEachCase(b, func(b *testing.B, n int, kind string) {
		h := newHarness(b, alloc.Options{LeaseMax: 1_000_000})
		h.pool(b, "p", 20)
		h.segment(b, "p", "24442000000000000001", "24442999999999999999")
		alloctest.BenchAllocate(b, h.eng, n, kind)
	})
}
