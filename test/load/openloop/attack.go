package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
)

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
		sampleUntil(sctx, c, res, begin, stdout)
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
