package nemesis_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/numberd/numberd/test/harness"
)

// outcome is how a request ended, as its client saw it.
type outcome string

const (
	outOK          outcome = "ok"          // 200 with the numbers asked for
	outUnavailable outcome = "unavailable" // 503 unavailable: nothing handed out
	outRefused     outcome = "refused"     // the connection was refused: the request never reached a node
	// outBrokeOff: sent, and no answer came (client timeout, connection cut by a
	// kill). The node may have consumed the numbers asked for.
	outBrokeOff outcome = "broke-off"
	// outUnexpected: an answer the contract does not allow here (500, 422,
	// pool_exhausted with pools this large, …).
	outUnexpected outcome = "unexpected"
	// outMalformed: a 200 whose numbers are too few or many, not ascending, or
	// not numbers of the pool.
	outMalformed outcome = "malformed"
)

// op is one request and its answer.
type op struct {
	ID     int64  `json:"id"`
	Worker int    `json:"worker"` // -1 for the checker's own probes
	Node   string `json:"node"`
	Pool   string `json:"pool"`
	Key    string `json:"key,omitempty"` // Idempotency-Key
	// Replay: the key was answered 200 before; the answer must be the same.
	Replay   bool      `json:"replay,omitempty"`
	Count    int       `json:"count"`
	Sent     time.Time `json:"sent"`
	Answered time.Time `json:"answered"`
	Status   int       `json:"status,omitempty"`
	Code     string    `json:"code,omitempty"`
	Err      string    `json:"err,omitempty"`
	Outcome  outcome   `json:"outcome"`
	// Runs are the numbers of a 200 as runs of consecutive suffixes (most
	// answers are one run); Bad those that are no number of the pool.
	Runs []iv     `json:"-"`
	Bad  []string `json:"bad,omitempty"`
}

// history is every request of the run, in the order they ended.
type history struct {
	mu  sync.Mutex
	ops []op
	seq atomic.Int64
}

func (h *history) add(o op) {
	h.mu.Lock()
	h.ops = append(h.ops, o)
	h.mu.Unlock()
}

func (h *history) all() []op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]op(nil), h.ops...)
}

// call sends one allocation to node and records it in h.
func call(h *history, c *harness.Client, worker int, node *harness.Node, pool string, count int, key string, replay bool) op {
	o := op{ID: h.seq.Add(1), Worker: worker, Node: node.Name(), Pool: pool, Key: key, Replay: replay, Count: count}
	var header []string
	if key != "" {
		header = []string{"Idempotency-Key", key}
	}
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	o.Sent = time.Now()
	r, err := c.Do(ctx, http.MethodPost, node.URL()+"/v1/pools/"+pool+"/numbers", map[string]int{"count": count}, header...)
	o.Answered = time.Now()
	cancel()
	switch {
	case err != nil && r == nil:
		o.Err = err.Error()
		if errors.Is(err, syscall.ECONNREFUSED) {
			o.Outcome = outRefused
		} else {
			o.Outcome = outBrokeOff
		}
	case err != nil:
		o.Status, o.Err, o.Outcome = r.Status, err.Error(), outMalformed
	default:
		o.Status, o.Code = r.Status, r.Code()
		switch {
		case r.Status == http.StatusOK:
			o.Outcome = outOK
			nums := r.Strings("numbers")
			runs, bad, ascending := poolByName(pool).runs(nums)
			o.Runs, o.Bad = runs, bad
			if len(nums) != count || len(bad) > 0 || !ascending {
				o.Outcome = outMalformed
				o.Err = fmt.Sprintf("%d numbers for a count of %d, ascending %v: %.300s", len(nums), count, ascending, r.Body)
			}
		case r.Status == http.StatusServiceUnavailable && r.Code() == "unavailable":
			o.Outcome = outUnavailable
		default:
			o.Outcome = outUnexpected
			o.Err = fmt.Sprintf("%.300s", r.Body)
		}
	}
	h.add(o)
	return o
}

// clients are the workers allocating during the run.
type clients struct {
	h     *history
	c     *harness.Client
	nodes []*harness.Node
	stop  chan struct{}
	wg    sync.WaitGroup
}

// Workers: plain ones send no key; keyed ones send a new key per allocation,
// retry it on 503 and on a broken-off call (a retry with the same key is safe),
// and now and then replay a key answered before.
const (
	plainWorkers = 8
	keyedWorkers = 4
	// replayShare is the share of a keyed worker's requests that replay a key.
	replayShare = 0.25
	// keyAttempts bounds the tries of one new key.
	keyAttempts = 4
	// recentKeys is how many of its last keys a worker counts as recent.
	recentKeys = 20
)

func startClients(h *history, c *harness.Client, nodes []*harness.Node, seed uint64) *clients {
	cl := &clients{h: h, c: c, nodes: nodes, stop: make(chan struct{})}
	for w := range plainWorkers + keyedWorkers {
		cl.wg.Add(1)
		// Each worker draws from a generator of its own, seeded from the run's
		// seed: what it asks for is reproducible, when is not.
		rng := rand.New(rand.NewPCG(seed, uint64(1000+w)))
		go cl.worker(w, w >= plainWorkers, rng)
	}
	return cl
}

// Stop stops the workers and waits for their calls in flight, which end within
// clientTimeout.
func (cl *clients) Stop() {
	select {
	case <-cl.stop:
	default:
		close(cl.stop)
	}
	cl.wg.Wait()
}

func (cl *clients) stopped() bool {
	select {
	case <-cl.stop:
		return true
	default:
		return false
	}
}

// keyed is a key answered 200, for replays.
type keyed struct {
	key, pool string
	count     int
}

func (cl *clients) worker(w int, withKeys bool, rng *rand.Rand) {
	defer cl.wg.Done()
	var done []keyed
	seq := 0
	for !cl.stopped() {
		pool := testPools[rng.IntN(len(testPools))].name
		count := drawCount(rng)
		node := rng.IntN(len(cl.nodes))
		if !withKeys {
			cl.pace(call(cl.h, cl.c, w, cl.nodes[node], pool, count, "", false))
			continue
		}
		if len(done) > 0 && rng.Float64() < replayShare {
			// Mostly a recent key, so that a lost record shows soon after the
			// fault that lost it; now and then any key of the run.
			i := rng.IntN(len(done))
			if rng.Float64() < 0.8 {
				i = len(done) - 1 - rng.IntN(min(len(done), recentKeys))
			}
			k := done[i]
			cl.pace(call(cl.h, cl.c, w, cl.nodes[node], k.pool, k.count, k.key, true))
			continue
		}
		seq++
		key := fmt.Sprintf("w%d-%d", w, seq)
		for attempt := 0; attempt < keyAttempts && !cl.stopped(); attempt++ {
			o := call(cl.h, cl.c, w, cl.nodes[(node+attempt)%len(cl.nodes)], pool, count, key, false)
			cl.pace(o)
			if o.Outcome == outOK {
				done = append(done, keyed{key, pool, count})
				break
			}
			if o.Outcome != outUnavailable && o.Outcome != outBrokeOff && o.Outcome != outRefused {
				break
			}
		}
	}
}

// drawCount is a request's count: mostly one number, sometimes a few, now and
// then a batch large enough to cross a segment's end.
func drawCount(rng *rand.Rand) int {
	switch x := rng.Float64(); {
	case x < 0.7:
		return 1
	case x < 0.9:
		return 2 + rng.IntN(4)
	default:
		return 10 + rng.IntN(31)
	}
}

// pace waits a little after a failed call, so that a worker does not spin on a
// node that is down.
func (cl *clients) pace(o op) {
	switch o.Outcome {
	case outOK:
	case outRefused, outUnavailable:
		time.Sleep(20 * time.Millisecond)
	default:
		time.Sleep(50 * time.Millisecond)
	}
}
