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
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
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
