// Command openloop sends POST requests at a constant arrival rate, whatever the
// server's answers take (an open-loop generator, as vegeta's attack or wrk2), and
// reports the latency distribution. A closed-loop tool such as wrk waits for an
// answer before sending the next request on a connection, so at saturation its
// percentiles measure the queue it builds itself; at a fixed rate below the peak
// they measure the server.
//
// The benchmark (scripts/bench.sh) uses it where vegeta would do: the module proxy
// here does not serve vegeta, and k6 needs more than a core for the rates numberd
// reaches on two.
//
//	openloop -url http://127.0.0.1:8080/v1/pools/p/numbers -rate 20000 -duration 10s
//	openloop … -duration 5m -record soak.rec -metrics http://127.0.0.1:8080/metrics -pid 1234
//
// Like wrk2 it keeps a fixed set of keep-alive connections (-conns, opened before
// the clock starts), each sending a prepared request and reading the answer
// itself — far cheaper per request than net/http's client, which matters when the
// generator shares two cores with the server. A pacer on its own OS thread wakes
// every -tick (an OS sleep, ~250 µs for the default 200 µs; Go's timers wake at
// 1 ms here) and queues every request due by then; a free connection takes the next one. The queue never
// blocks the pacer, so when the server slows down requests wait in it and that
// wait is part of their latency (no coordinated omission): latency runs from the
// moment a request was queued to its answer read in full. "From schedule" adds
// the pacer's own lateness (lag, reported so that a generator that fell behind
// shows).
//
// With -record, every answer's numbers are written in test/load/internal/record's
// format for dupcheck; with -metrics, the server's go_goroutines and
// process_resident_memory_bytes are sampled every -sample-every (and VmRSS of
// -pid, when given). Each sample also reports the window since the one before:
// the answers received, their p99 and maximum, and the machine's CPU time stolen
// by the hypervisor and idle (from /proc/stat), so that a run's tail can be laid
// at the door of the interval, and the machine, it came from.
//
// The last line is machine-readable: `RESULT key=value …`. The exit status is 1
// when a request failed (transport error or a status other than 200), 2 on bad
// usage or a failure to connect.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/numberd/numberd/test/load/internal/record"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type config struct {
	url         string
	rate        float64
	duration    time.Duration
	body        string
	token       string
	timeout     time.Duration
	conns       int
	recordPath  string
	metricsURL  string
	pid         int
	sampleEvery time.Duration
	tick        time.Duration
}

func run(args []string, stdout, stderr io.Writer) int {
	var c config
	fs := flag.NewFlagSet("openloop", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.url, "url", "", "URL to POST to (required)")
	fs.Float64Var(&c.rate, "rate", 1000, "requests per second")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long to send")
	fs.StringVar(&c.body, "body", `{"count":1}`, "request body (JSON)")
	fs.StringVar(&c.token, "token", os.Getenv("NUMBERD_TOKEN"), "bearer token (NUMBERD_TOKEN)")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "a request's timeout")
	fs.IntVar(&c.conns, "conns", 64, "keep-alive connections, opened before the clock starts")
	fs.StringVar(&c.recordPath, "record", "", "write every answer's numbers to this file (dupcheck's format)")
	fs.StringVar(&c.metricsURL, "metrics", "", "server's Prometheus URL to sample goroutines and RSS from")
	fs.IntVar(&c.pid, "pid", 0, "server's process id, to sample VmRSS from /proc")
	fs.DurationVar(&c.sampleEvery, "sample-every", 10*time.Second, "sampling interval for -metrics and -pid")
	fs.DurationVar(&c.tick, "tick", 200*time.Microsecond, "the pacer's sleep between looks at the schedule (each wake-up costs a system call)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if c.url == "" || c.rate <= 0 || c.duration <= 0 || c.conns < 1 || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "openloop: -url is required; -rate, -duration and -conns must be positive")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := attack(ctx, c, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "openloop:", err)
		return 2
	}
	res.print(stdout, c)
	if res.failed() {
		return 1
	}
	return 0
}

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

// attack runs the generator for c.duration.
// job is one scheduled request: when it was due and when the pacer queued it.
type job struct{ due, queued time.Time }

// attack runs the generator for c.duration.
func attack(ctx context.Context, c config, stdout io.Writer) (*result, error) {
	u, err := url.Parse(c.url)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("-url %q: want http://host:port/path", c.url)
	}
	var raw bytes.Buffer
	fmt.Fprintf(&raw, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", u.RequestURI(), u.Host, len(c.body))
	if c.token != "" {
		fmt.Fprintf(&raw, "Authorization: Bearer %s\r\n", c.token)
	}
	raw.WriteString("\r\n")
	raw.WriteString(c.body)
	req := raw.Bytes()

	conns := make([]*conn, c.conns)
	for i := range conns {
		cn, err := dial(u.Host, c.timeout)
		if err != nil {
			for _, cn := range conns[:i] {
				cn.close()
			}
			return nil, err
		}
		conns[i] = cn
	}

	var rec *recorder
	if c.recordPath != "" {
		f, err := os.Create(c.recordPath)
		if err != nil {
			return nil, err
		}
		rec = &recorder{w: bufio.NewWriterSize(f, 1<<20), f: f}
	}

	res := &result{status: map[int]int64{}}
	res.window.Store(new(hist))
	total := int64(c.rate * c.duration.Seconds())
	// Room for the whole run: the pacer never blocks.
	jobs := make(chan job, min(total, 1<<22))
	var wg sync.WaitGroup
	for _, cn := range conns {
		wg.Go(func() {
			defer cn.close()
			for j := range jobs {
				res.lag.record(j.queued.Sub(j.due))
				status, body, err := cn.do(u.Host, req, c.timeout)
				end := time.Now()
				if err != nil {
					res.transport.Add(1)
					continue
				}
				res.latency.record(end.Sub(j.queued))
				res.window.Load().record(end.Sub(j.queued))
				res.sched.record(end.Sub(j.due))
				if status != http.StatusOK {
					res.statusMu.Lock()
					res.status[status]++
					res.statusMu.Unlock()
					continue
				}
				res.ok.Add(1)
				if rec != nil {
					if err := rec.add(body); err != nil && res.recordErr.Add(1) == 1 {
						fmt.Fprintln(os.Stderr, "openloop: record:", err)
					}
				}
			}
		})
	}

	begin := time.Now()
	samplerDone := make(chan struct{})
	sctx, stopSampling := context.WithCancel(ctx)
	go func() {
		defer close(samplerDone)
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
			case <-sctx.Done():
				// No sample after the run: the connections are closed by then.
				return
			case <-t.C:
				take(true)
			}
		}
	}()

	// The pacer.
	interval := float64(time.Second) / c.rate
	func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var i int64
		for i < total && ctx.Err() == nil {
			now := time.Now()
			for ; i < total; i++ {
				due := begin.Add(time.Duration(float64(i) * interval))
				if due.After(now) {
					break
				}
				res.sent.Add(1)
				jobs <- job{due: due, queued: now}
			}
			ts := syscall.NsecToTimespec(int64(c.tick))
			_ = syscall.Nanosleep(&ts, nil)
		}
	}()
	res.elapsed = time.Since(begin)
	stopSampling()
	close(jobs)
	wg.Wait()
	<-samplerDone
	if rec != nil {
		if err := rec.close(); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// conn is one keep-alive HTTP/1.1 connection.
type conn struct {
	nc  net.Conn
	br  *bufio.Reader
	buf bytes.Buffer
}

func dial(host string, timeout time.Duration) (*conn, error) {
	nc, err := net.DialTimeout("tcp", host, timeout)
	if err != nil {
		return nil, err
	}
	return &conn{nc: nc, br: bufio.NewReaderSize(nc, 64<<10)}, nil
}

func (c *conn) close() {
	if c.nc != nil {
		c.nc.Close()
	}
}

// do sends req and reads the answer, whose body stays valid until the next
// call. After an error or a `Connection: close` the next call dials anew.
func (c *conn) do(host string, req []byte, timeout time.Duration) (int, []byte, error) {
	if c.nc == nil {
		nc, err := net.DialTimeout("tcp", host, timeout)
		if err != nil {
			return 0, nil, err
		}
		c.nc = nc
		c.br.Reset(nc)
	}
	status, keep, err := c.roundTrip(req, timeout)
	if err != nil || !keep {
		c.nc.Close()
		c.nc = nil
	}
	return status, c.buf.Bytes(), err
}

func (c *conn) roundTrip(req []byte, timeout time.Duration) (int, bool, error) {
	if err := c.nc.SetDeadline(time.Now().Add(timeout)); err != nil {
		return 0, false, err
	}
	if _, err := c.nc.Write(req); err != nil {
		return 0, false, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, false, err
	}
	c.buf.Reset()
	_, err = c.buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, false, err
	}
	return resp.StatusCode, !resp.Close, nil
}

type recorder struct {
	mu  sync.Mutex
	w   *bufio.Writer
	f   *os.File
	buf []byte
}

func (r *recorder) add(data []byte) error {
	var a struct {
		Pool    string   `json:"pool"`
		Numbers []string `json:"numbers"`
	}
	if err := json.Unmarshal(data, &a); err != nil {
		return err
	}
	runs, err := record.Runs(a.Pool, a.Numbers)
	if err != nil {
		return err
	}
	if len(runs) == 0 {
		return fmt.Errorf("an answer of 200 without numbers: %s", data)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = record.AppendLine(r.buf[:0], a.Pool, runs)
	_, err = r.w.Write(r.buf)
	return err
}

func (r *recorder) close() error {
	err := r.w.Flush()
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	return err
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
