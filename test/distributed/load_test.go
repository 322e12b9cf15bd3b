package distributed_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/numberd/numberd/test/harness"
)

// loadOpts configures concurrent HTTP clients allocating from numberd nodes.
type loadOpts struct {
	// pools are drawn from in turn by the workers (worker w uses pools[w%len]).
	pools []string
	nodes []*harness.Node
	// workers is how many clients run at once; worker w asks for w%maxCount+1
	// numbers at a time, starting on node w%len(nodes) and going round them.
	workers, maxCount int
	// drain: a worker answered pool_exhausted asks for one number at a time, and
	// stops once even that is exhausted. Without drain, exhaustion fails the test.
	drain bool
}

// load is a running set of clients. Each sends its requests to the nodes in turn,
// and retries on 503 unavailable and on connection errors with the next node.
type load struct {
	t      *testing.T
	opts   loadOpts
	client *harness.Client
	ledger *harness.Ledger

	stop chan struct{}
	wg   sync.WaitGroup

	ok          atomic.Int64 // 200 answers
	unavailable atomic.Int64 // 503 unavailable answers
	refused     atomic.Int64 // connections refused: the request never reached a node
	// inDoubt counts the numbers asked for by requests that failed after they
	// were sent (a node killed while answering): numberd may have taken them.
	inDoubt     atomic.Int64
	inDoubtReqs atomic.Int64
	exhausted   atomic.Int64 // workers that stopped at pool_exhausted
	running     atomic.Int64
	lastUnavail atomic.Int64 // unix nanos of the last 503 unavailable
	maxLatency  atomic.Int64 // nanoseconds, of any answer
}

func startLoad(t *testing.T, c *harness.Client, l *harness.Ledger, opts loadOpts) *load {
	t.Helper()
	if opts.maxCount <= 0 {
		opts.maxCount = 1
	}
	ld := &load{t: t, opts: opts, client: c, ledger: l, stop: make(chan struct{})}
	ld.running.Store(int64(opts.workers))
	for w := range opts.workers {
		ld.wg.Add(1)
		go ld.worker(w)
	}
	t.Cleanup(ld.Stop)
	return ld
}

// Stop stops the clients and waits for them.
func (ld *load) Stop() {
	select {
	case <-ld.stop:
	default:
		close(ld.stop)
	}
	ld.wg.Wait()
}

// Wait waits for every client to stop by itself (drain mode) within timeout.
func (ld *load) Wait(timeout time.Duration) {
	ld.t.Helper()
	done := make(chan struct{})
	go func() { ld.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		ld.t.Fatalf("the clients did not drain the pool within %v: %d of %d still running, %d numbers handed out",
			timeout, ld.running.Load(), ld.opts.workers, ld.ledger.Count())
	}
}

// waitFor waits until the ledger holds n numbers, failing t after timeout or if
// every client stopped.
func (ld *load) waitFor(n int, timeout time.Duration, what string) time.Duration {
	ld.t.Helper()
	start := time.Now()
	for ld.ledger.Count() < n {
		if ld.running.Load() == 0 {
			ld.t.Fatalf("%s: every client stopped at %d numbers, want %d", what, ld.ledger.Count(), n)
		}
		if time.Since(start) > timeout {
			ld.t.Fatalf("%s: %d numbers after %v, want %d (503 unavailable so far: %d)", what, ld.ledger.Count(), timeout, n, ld.unavailable.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func (ld *load) worker(w int) {
	defer ld.wg.Done()
	defer ld.running.Add(-1)
	nodes := ld.opts.nodes
	pool := ld.opts.pools[w%len(ld.opts.pools)]
	count := w%ld.opts.maxCount + 1
	idx := w % len(nodes)
	for {
		select {
		case <-ld.stop:
			return
		default:
		}
		node := nodes[idx]
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		nums, r, err := ld.client.Allocate(ctx, node.URL(), pool, count)
		took := time.Since(start)
		cancel()
		for {
			m := ld.maxLatency.Load()
			if int64(took) <= m || ld.maxLatency.CompareAndSwap(m, int64(took)) {
				break
			}
		}
		switch {
		case err != nil && r == nil:
			// The node is down or went down while answering.
			if errors.Is(err, syscall.ECONNREFUSED) {
				ld.refused.Add(1)
			} else {
				ld.inDoubt.Add(int64(count))
				ld.inDoubtReqs.Add(1)
			}
			idx = (idx + 1) % len(nodes)
			time.Sleep(5 * time.Millisecond)
		case err != nil:
			ld.t.Errorf("allocate on %s: %v", node.Name(), err)
			return
		case r.Status == http.StatusOK:
			ld.ok.Add(1)
			ld.ledger.Record(node.Name(), nums)
			idx = (idx + 1) % len(nodes)
		case r.Status == http.StatusServiceUnavailable && r.Code() == "unavailable":
			if r.ContentType() != "application/problem+json" {
				ld.t.Errorf("503 from %s is %s, want application/problem+json", node.Name(), r.ContentType())
			}
			ld.unavailable.Add(1)
			ld.lastUnavail.Store(time.Now().UnixNano())
			idx = (idx + 1) % len(nodes)
			time.Sleep(10 * time.Millisecond)
		case r.Status == http.StatusServiceUnavailable && r.Code() == "pool_exhausted":
			if !ld.opts.drain {
				ld.t.Errorf("pool %s exhausted under load on %s at %d numbers: %s", pool, node.Name(), ld.ledger.Count(), r)
				return
			}
			if count > 1 {
				count = 1
				continue
			}
			ld.exhausted.Add(1)
			return
		default:
			ld.t.Errorf("allocate %d of %s on %s: unexpected answer %s", count, pool, node.Name(), r)
			return
		}
	}
}
