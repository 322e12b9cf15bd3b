package alloctest

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/numberd/numberd"
)

// callers are the numbers of concurrent callers the engine benchmarks run with.
var callers = []int{1, 256}

// kinds are the two kinds of request the engine benchmarks compare: plain, and
// with an Idempotency-Key of its own, whose record must be kept durably.
var kinds = []string{"plain", "keyed"}

// BenchAllocate allocates one number per operation from callers goroutines.
func BenchAllocate(b *testing.B, eng interface {
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

// ForEachCase runs f once per number of callers and kind of request.
func ForEachCase(b *testing.B, f func(b *testing.B, n int, kind string)) {
	for _, kind := range kinds {
		for _, n := range callers {
			b.Run(fmt.Sprintf("%s/callers=%d", kind, n), func(b *testing.B) { f(b, n, kind) })
		}
	}
}
