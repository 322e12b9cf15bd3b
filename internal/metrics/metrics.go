// Package metrics defines numberd's Prometheus metrics in one registry, so every
// part records into the same set and tests can read it.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics is numberd's set of metrics.
type Metrics struct {
	Registry *prometheus.Registry

	// Allocations counts answered allocation requests by pool and outcome
	// ("ok", "replayed", "exhausted", "error").
	Allocations *prometheus.CounterVec
	// Numbers counts the numbers handed out, by pool.
	Numbers *prometheus.CounterVec
	// AllocationSeconds is the engine's time to answer an allocation.
	AllocationSeconds prometheus.Histogram
	// GapNumbers counts the numbers this process recorded as gaps, by pool and reason.
	GapNumbers *prometheus.CounterVec
	// Reservations counts durable high-water mark extensions, by outcome.
	Reservations *prometheus.CounterVec
	// RedisCalls counts script calls to Redis, by script: allocations per
	// allocate call is the group commit's yield.
	RedisCalls *prometheus.CounterVec
	// RedisRoundTrips counts the round trips of allocate calls: the calls of
	// several pools share one when they wait at once.
	RedisRoundTrips prometheus.Counter
	// RedisRoundTripSeconds is the time a round trip of allocate calls took,
	// sent to answered: Redis's own time, its wait for a CPU and this process's
	// wait to read the answer. Set beside Redis's usec_per_call of evalsha, it
	// tells the three apart.
	RedisRoundTripSeconds prometheus.Histogram
	// Reseeds counts reseeds of a pool's Redis state, by cause.
	Reseeds *prometheus.CounterVec
	// Rollbacks counts a store found gone back in time, by pool and store
	// ("redis", "mysql"): each is a restored backup or a failover that lost
	// writes, which numberd survived by skipping numbers.
	Rollbacks *prometheus.CounterVec
	// RefillDownloads counts downloads from upstreams, by pool and outcome
	// ("ok", "failed", "attempt_failed").
	RefillDownloads *prometheus.CounterVec
	// RefillSeconds is the time a download took, from its first call to its segment stored.
	RefillSeconds prometheus.Histogram
	// RefillFenced counts refill writes refused for a stale fencing token.
	RefillFenced prometheus.Counter
	// HTTPRequests counts HTTP answers by route pattern and status code.
	HTTPRequests *prometheus.CounterVec
	// HTTPSeconds is the time to answer an HTTP request, by route pattern.
	HTTPSeconds *prometheus.HistogramVec
}

// New returns a fresh set of metrics in its own registry, with the Go runtime and
// process collectors registered.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Allocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "numberd_allocations_total", Help: "Allocation requests answered, by pool and outcome.",
		}, []string{"pool", "outcome"}),
		Numbers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "numberd_numbers_issued_total", Help: "Numbers handed out, by pool.",
		}, []string{"pool"}),
		AllocationSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "numberd_allocation_duration_seconds",
			Help:    "Time the engine took to answer an allocation.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		GapNumbers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "numberd_gap_numbers_total", Help: "Numbers this process recorded as never to be handed out, by pool and reason.",
		}, []string{"pool", "reason"}),
		Reservations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "numberd_reservations_total", Help: "Extensions of the durable high-water mark, by outcome.",
		}, []string{"outcome"}),
		RedisCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "numberd_redis_calls_total", Help: "Script calls to Redis, by script.",
		}, []string{"script"}),
		RedisRoundTripSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "numberd_redis_round_trip_seconds", Help: "Time a round trip of allocate calls to Redis took, sent to answered.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		RedisRoundTrips: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "numberd_redis_round_trips_total", Help: "Round trips to Redis carrying allocate calls (a pipeline of calls counts once).",
		}),
		Reseeds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "numberd_reseeds_total", Help: "Reseeds of a pool's Redis state from the store, by cause.",
		}, []string{"pool", "cause"}),
		Rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "numberd_rollbacks_detected_total", Help: "Stores found gone back in time (a restored backup, a failover that lost writes), by pool and store.",
		}, []string{"pool", "store"}),
		RefillDownloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "numberd_refill_downloads_total", Help: "Downloads of segments from upstreams, by pool and outcome.",
		}, []string{"pool", "outcome"}),
		RefillSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "numberd_refill_duration_seconds", Help: "Time a download took, first call to segment stored.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}),
		RefillFenced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "numberd_refill_fenced_total", Help: "Refill writes refused for a stale fencing token.",
		}),
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "numberd_http_requests_total", Help: "HTTP requests answered, by route and status code.",
		}, []string{"route", "code"}),
		HTTPSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "numberd_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
	}
	m.Registry.MustRegister(
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.Allocations, m.Numbers, m.AllocationSeconds, m.GapNumbers, m.Reservations, m.RedisCalls, m.RedisRoundTrips, m.RedisRoundTripSeconds, m.Reseeds, m.Rollbacks, m.RefillDownloads, m.RefillSeconds, m.RefillFenced, m.HTTPRequests, m.HTTPSeconds,
	)
	return m
}

// PoolGauge is one pool's live counts; a negative count is not known and not shown.
type PoolGauge struct {
	Pool      string
	Available int64
	Issued    int64
}

// WatchPools registers gauges of every pool's available and issued numbers, read
// from pools at each scrape.
func (m *Metrics) WatchPools(pools func() []PoolGauge) {
	m.Registry.MustRegister(poolCollector(pools))
}

var (
	availableDesc = prometheus.NewDesc("numberd_pool_available_numbers", "Numbers a pool can still hand out.", []string{"pool"}, nil)
	issuedDesc    = prometheus.NewDesc("numberd_pool_issued_numbers", "Numbers a pool has handed out.", []string{"pool"}, nil)
)

type poolCollector func() []PoolGauge

func (c poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- availableDesc
	ch <- issuedDesc
}

func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, g := range c() {
		ch <- prometheus.MustNewConstMetric(availableDesc, prometheus.GaugeValue, float64(g.Available), g.Pool)
		if g.Issued >= 0 {
			ch <- prometheus.MustNewConstMetric(issuedDesc, prometheus.GaugeValue, float64(g.Issued), g.Pool)
		}
	}
}
