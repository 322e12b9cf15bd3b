package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type result struct {
	sent, ok, transport, recordErr atomic.Int64
	statusMu                       sync.Mutex
	status                         map[int]int64
	latency, lag, sched            hist
	window                         atomic.Pointer[hist] // latencies since the last sample
	elapsed                        time.Duration
	samples                        []sample
}

func (r *result) failed() bool {
	return r.ok.Load() != r.sent.Load() || r.recordErr.Load() > 0
}

func mb(b int64) float64 {
	if b < 0 {
		return -1
	}
	return float64(b) / (1 << 20)
}

func us(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e3, 'f', 1, 64) }

func (r *result) print(w io.Writer, c config) {
	sent := r.sent.Load()
	achieved := float64(sent) / r.elapsed.Seconds()
	fmt.Fprintf(w, "openloop: %s at %.0f/s for %s: sent %d (%.0f/s), ok %d, transport errors %d",
		c.url, c.rate, c.duration, sent, achieved, r.ok.Load(), r.transport.Load())
	r.statusMu.Lock()
	codes := make([]int, 0, len(r.status))
	var non200 int64
	for code, n := range r.status {
		codes = append(codes, code)
		non200 += n
	}
	sort.Ints(codes)
	for _, code := range codes {
		fmt.Fprintf(w, ", status %d: %d", code, r.status[code])
	}
	r.statusMu.Unlock()
	fmt.Fprintln(w)
	fmt.Fprintf(w, "latency   p50 %s µs  p90 %s µs  p99 %s µs  p99.9 %s µs  max %s µs\n",
		us(r.latency.quantile(.5)), us(r.latency.quantile(.9)), us(r.latency.quantile(.99)), us(r.latency.quantile(.999)), us(r.latency.quantile(1)))
	fmt.Fprintf(w, "from schedule p99 %s µs; pacer lag p99 %s µs, max %s µs\n",
		us(r.sched.quantile(.99)), us(r.lag.quantile(.99)), us(r.lag.quantile(1)))
	kv := []string{
		"rate=" + strconv.FormatFloat(c.rate, 'f', 0, 64),
		"achieved=" + strconv.FormatFloat(achieved, 'f', 0, 64),
		"sent=" + strconv.FormatInt(sent, 10),
		"ok=" + strconv.FormatInt(r.ok.Load(), 10),
		"errors=" + strconv.FormatInt(r.transport.Load()+non200+r.recordErr.Load(), 10),
		"p50_us=" + us(r.latency.quantile(.5)),
		"p90_us=" + us(r.latency.quantile(.9)),
		"p99_us=" + us(r.latency.quantile(.99)),
		"p999_us=" + us(r.latency.quantile(.999)),
		"max_us=" + us(r.latency.quantile(1)),
		"sched_p99_us=" + us(r.sched.quantile(.99)),
		"lag_p99_us=" + us(r.lag.quantile(.99)),
	}
	if len(r.samples) > 0 {
		gmin, gmax, rss := int64(-1), int64(-1), int64(-1)
		for _, s := range r.samples {
			if s.goroutines >= 0 {
				if gmin < 0 || s.goroutines < gmin {
					gmin = s.goroutines
				}
				gmax = max(gmax, s.goroutines)
			}
			rss = max(rss, s.rss, s.vmrss)
		}
		kv = append(kv, "samples="+strconv.Itoa(len(r.samples)),
			"goroutines_min="+strconv.FormatInt(gmin, 10),
			"goroutines_max="+strconv.FormatInt(gmax, 10),
			"rss_max_mb="+strconv.FormatFloat(mb(rss), 'f', 1, 64))
		kv = append(kv, windowSummary(r.samples)...)
	}
	fmt.Fprintln(w, "RESULT "+strings.Join(kv, " "))
}

// windowSummary is the RESULT line's account of the sampled windows: the median
// and the worst window p99, and the steal of the worst window.
func windowSummary(samples []sample) []string {
	var wins []*windowStats
	for _, s := range samples {
		if s.win != nil && s.win.answers > 0 {
			wins = append(wins, s.win)
		}
	}
	if len(wins) == 0 {
		return nil
	}
	sort.Slice(wins, func(i, j int) bool { return wins[i].p99 < wins[j].p99 })
	worst := wins[len(wins)-1]
	return []string{
		"windows=" + strconv.Itoa(len(wins)),
		"window_p99_median_us=" + us(wins[len(wins)/2].p99),
		"window_p99_max_us=" + us(worst.p99),
		"worst_window_steal_pct=" + strconv.FormatFloat(100*worst.steal, 'f', 1, 64),
		"worst_window_idle_pct=" + strconv.FormatFloat(100*worst.idle, 'f', 1, 64),
	}
}
