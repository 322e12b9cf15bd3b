package embedded

import (
	"context"
	"fmt"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/segment"
	"github.com/numberd/numberd/internal/store"
)

// Allocate hands out req.Count numbers of req.Pool, all or none. It returns
// ErrInvalid for a count out of range, numberd.ErrPoolNotFound, ErrExhausted when the
// pool has fewer numbers left, ErrIdempotencyConflict for a key reused with another
// count, and numberd.ErrUnavailable or a context error when the store failed or was
// too slow; in every error case nothing was consumed.
func (e *Engine) Allocate(ctx context.Context, req numberd.Request) (numberd.Allocation, error) {
	start := e.opts.Now()
	a, err := e.allocate(ctx, req, start)
	alloc.Observe(e.opts.Metrics, req.Pool, a, err, e.opts.Now().Sub(start))
	return a, err
}

func (e *Engine) allocate(ctx context.Context, req numberd.Request, now time.Time) (numberd.Allocation, error) {
	if err := req.Validate(); err != nil {
		return numberd.Allocation{}, err
	}
	p, err := e.pool(req.Pool)
	if err != nil {
		return numberd.Allocation{}, err
	}
	if req.Idempotency == nil {
		if span, ok := e.takeFast(p, int64(req.Count), now); ok {
			return numberd.Allocation{Pool: p.id, Spans: []segment.Range{span}}, nil
		}
		p.lock()
		defer p.unlock()
		spans, _, err := e.take(ctx, p, req.Count)
		return numberd.Allocation{Pool: p.id, Spans: spans}, err
	}

	p.idemMu.Lock()
	defer p.idemMu.Unlock()
	key := req.Idempotency
	rec, found, err := e.store.records.Get(ctx, p.id, key.Scope, key.Key)
	if err != nil {
		return numberd.Allocation{}, err
	}
	if found {
		if rec.Fingerprint != req.Fingerprint() {
			return numberd.Allocation{}, fmt.Errorf("%w: key %q was used with %s", numberd.ErrIdempotencyConflict, key.Key, rec.Fingerprint)
		}
		spans, err := alloc.DecodeSpans(rec.Answer, p.Cfg.Digits)
		return numberd.Allocation{Pool: p.id, Spans: spans, Replayed: true}, err
	}
	p.lock()
	defer p.unlock()
	spans, undo, err := e.take(ctx, p, req.Count)
	if err != nil {
		return numberd.Allocation{}, err
	}
	stored := e.opts.Now()
	err = e.store.records.Put(ctx, store.IdempotencyRecord{
		Pool: p.id, Scope: key.Scope, Key: key.Key, Fingerprint: req.Fingerprint(),
		Answer: alloc.EncodeSpans(spans), CreatedAt: stored, ExpiresAt: stored.Add(numberd.IdempotencyTTL),
	})
	if err != nil {
		// p.mu has been held since take: no other allocation moved these cursors.
		undo()
		return numberd.Allocation{}, err
	}
	return numberd.Allocation{Pool: p.id, Spans: spans}, nil
}

// take takes count numbers off p, waiting for a reservation when the reserved ones
// do not cover them. It is called and returns with p.mu held; undo gives the numbers
// back while p.mu is still held.
func (e *Engine) take(ctx context.Context, p *pool, count int) (spans []segment.Range, undo func(), err error) {
	for {
		if e.closed.Load() {
			return nil, nil, numberd.ErrClosed
		}
		if err := e.expire(ctx, p); err != nil {
			return nil, nil, err
		}
		plan, ok := p.plan(count)
		if !ok {
			e.opts.Observe(p.id, p.available())
			return nil, nil, fmt.Errorf("%w: pool %s has %d numbers left, %d asked", numberd.ErrExhausted, p.id, p.available(), count)
		}
		if plan.reserved() {
			undo := p.commit(plan)
			e.reserveIfLow(p)
			e.opts.Observe(p.id, p.available())
			return plan.spans(), undo, nil
		}
		ext := e.reserve(p, int64(count)+p.lease.Size)
		p.unlock()
		select {
		case <-ext.Done:
		case <-ctx.Done():
		}
		p.lock()
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		if ext.Err != nil {
			return nil, nil, ext.Err
		}
	}
}
