package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

type sample struct {
	at         time.Duration
	goroutines int64 // -1: not sampled
	rss        int64 // bytes, from /metrics; -1: not sampled
	vmrss      int64 // bytes, from /proc; -1: not sampled
	win        *windowStats
}

// windowStats describe the interval before a sample.
type windowStats struct {
	answers     uint64
	p99, max    time.Duration
	steal, idle float64 // shares of the machine's CPU time, 0..1; -1: unknown
}

// sampleUntil samples the server every c.sampleEvery until ctx ends, when
// -metrics or -pid asks for it, keeping each sample in res and printing it.
func sampleUntil(ctx context.Context, c config, res *result, begin time.Time, stdout io.Writer) {
	if c.metricsURL == "" && c.pid == 0 {
		return
	}
	t := time.NewTicker(c.sampleEvery)
	defer t.Stop()
	cpu := readCPUTimes()
	take := func(window bool) {
		s := takeSample(c, time.Since(begin))
		if window {
			now := readCPUTimes()
			s.win = closeWindow(res.window.Swap(new(hist)), cpu, now)
			cpu = now
		}
		res.samples = append(res.samples, s)
		line := fmt.Sprintf("sample t=%-5s goroutines=%d rss_mb=%.1f vmrss_mb=%.1f",
			s.at.Round(time.Second), s.goroutines, mb(s.rss), mb(s.vmrss))
		if w := s.win; w != nil {
			line += fmt.Sprintf(" answers=%d p99_us=%s max_us=%s steal_pct=%.1f idle_pct=%.1f",
				w.answers, us(w.p99), us(w.max), 100*w.steal, 100*w.idle)
		}
		fmt.Fprintln(stdout, line)
	}
	take(false)
	for {
		select {
		case <-ctx.Done():
			// No sample after the run: the connections are closed by then.
			return
		case <-t.C:
			take(true)
		}
	}
}

func takeSample(c config, at time.Duration) sample {
	s := sample{at: at, goroutines: -1, rss: -1, vmrss: -1}
	if c.metricsURL != "" {
		req, _ := http.NewRequest(http.MethodGet, c.metricsURL, nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		cl := &http.Client{Timeout: 5 * time.Second}
		if resp, err := cl.Do(req); err == nil {
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
			for sc.Scan() {
				name, val, ok := strings.Cut(sc.Text(), " ")
				if !ok {
					continue
				}
				switch name {
				case "go_goroutines":
					if f, err := strconv.ParseFloat(val, 64); err == nil {
						s.goroutines = int64(f)
					}
				case "process_resident_memory_bytes":
					if f, err := strconv.ParseFloat(val, 64); err == nil {
						s.rss = int64(f)
					}
				}
			}
			resp.Body.Close()
		}
	}
	if c.pid > 0 {
		if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.pid)); err == nil {
			for _, line := range strings.Split(string(data), "\n") {
				if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
					f := strings.Fields(v)
					if len(f) >= 1 {
						if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
							s.vmrss = kb << 10
						}
					}
				}
			}
		}
	}
	return s
}

// cpuTimes are the machine's CPU times from the first line of /proc/stat, in
// clock ticks.
type cpuTimes struct{ total, idle, steal uint64 }

func readCPUTimes() cpuTimes {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	return parseCPUTimes(string(data))
}

// parseCPUTimes reads the first line of /proc/stat's text; zero when it is not
// the machine's line.
func parseCPUTimes(stat string) cpuTimes {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTimes{}
	}
	var t cpuTimes
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return cpuTimes{}
		}
		// user nice system idle iowait irq softirq steal guest guest_nice: guest
		// time is counted in user time already.
		if i < 8 {
			t.total += n
		}
		switch i {
		case 3, 4:
			t.idle += n
		case 7:
			t.steal += n
		}
	}
	return t
}

// closeWindow summarises the latencies of one window and the machine's CPU
// times over it.
func closeWindow(h *hist, from, to cpuTimes) *windowStats {
	w := &windowStats{p99: h.quantile(.99), max: h.quantile(1), steal: -1, idle: -1}
	for i := range h.counts {
		w.answers += h.counts[i].Load()
	}
	if d := to.total - from.total; to.total > from.total {
		w.steal = float64(to.steal-from.steal) / float64(d)
		w.idle = float64(to.idle-from.idle) / float64(d)
	}
	return w
}
