package alloc

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/metrics"
)

// Observe records an allocation's outcome and duration.
func Observe(m *metrics.Metrics, poolID string, a numberd.Allocation, err error, took time.Duration) {
	m.AllocationSeconds.Observe(took.Seconds())
	outcome := "ok"
	switch {
	case errors.Is(err, numberd.ErrPoolNotFound), errors.Is(err, numberd.ErrInvalid):
		return // not a pool's event: unknown ids must not grow the label set
	case errors.Is(err, numberd.ErrExhausted):
		outcome = "exhausted"
	case err != nil:
		outcome = "error"
	case a.Replayed:
		outcome = "replayed"
	default:
		c := poolCountersOf(m, poolID)
		c.numbers.Add(float64(a.Count()))
		c.ok.Inc()
		return
	}
	m.Allocations.WithLabelValues(poolID, outcome).Inc()
}

// poolCounters are a pool's counters of successful allocations, looked up once:
// label lookups on every allocation showed in the profile.
type poolCounters struct {
	ok, numbers prometheus.Counter
}

var counterCache sync.Map // struct{*metrics.Metrics; string} → *poolCounters

func poolCountersOf(m *metrics.Metrics, pool string) *poolCounters {
	key := struct {
		m    *metrics.Metrics
		pool string
	}{m, pool}
	if c, ok := counterCache.Load(key); ok {
		return c.(*poolCounters)
	}
	c, _ := counterCache.LoadOrStore(key, &poolCounters{ok: m.Allocations.WithLabelValues(pool, "ok"), numbers: m.Numbers.WithLabelValues(pool)})
	return c.(*poolCounters)
}
