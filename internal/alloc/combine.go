package alloc

import (
	"context"
	"sync"
)

// maxCombined bounds the items one combined run carries.
const maxCombined = 256

// Combiner runs work for many callers in batches, without a goroutine of its
// own or a timer: the caller that finds no batch in flight runs one at once with
// whatever waits, and the callers arriving meanwhile queue for the next, which
// the caller ending a batch hands to the first of them. A batch is thus sized by
// the load.
type Combiner[In, Out any] struct {
	// Run does the work of ins under ctx (the leading caller's) and returns one
	// answer per item, or an error for all.
	Run func(ctx context.Context, ins []In) ([]Out, error)

	mu     sync.Mutex
	busy   bool
	queued []*combined[In, Out]
}

type combined[In, Out any] struct {
	ctx  context.Context
	in   In
	out  Out
	err  error
	lead bool
	done chan struct{} // one signal: answered, or lead
}

// Do has in done in a batch and returns its answer.
func (c *Combiner[In, Out]) Do(ctx context.Context, in In) (Out, error) {
	w := &combined[In, Out]{ctx: ctx, in: in, done: make(chan struct{}, 1)}
	c.mu.Lock()
	if c.busy {
		c.queued = append(c.queued, w)
		c.mu.Unlock()
		<-w.done
	} else {
		c.busy = true
		c.mu.Unlock()
		w.lead = true
	}
	if w.lead {
		c.leadBatch(w)
	}
	return w.out, w.err
}

func (c *Combiner[In, Out]) leadBatch(self *combined[In, Out]) {
	c.mu.Lock()
	n := min(len(c.queued), maxCombined-1)
	batch := append([]*combined[In, Out]{self}, c.queued[:n]...)
	c.queued = c.queued[:copy(c.queued, c.queued[n:])]
	c.mu.Unlock()

	ins := make([]In, len(batch))
	for i, w := range batch {
		ins[i] = w.in
	}
	outs, err := c.Run(self.ctx, ins)
	for i, w := range batch {
		if err != nil {
			w.err = err
		} else {
			w.out = outs[i]
		}
		if w != self {
			w.done <- struct{}{}
		}
	}

	c.mu.Lock()
	if len(c.queued) == 0 {
		c.busy = false
		c.mu.Unlock()
		return
	}
	next := c.queued[0]
	c.queued = c.queued[:copy(c.queued, c.queued[1:])]
	c.mu.Unlock()
	next.lead = true
	next.done <- struct{}{}
}
