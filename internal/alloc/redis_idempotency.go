package alloc

import (
	"context"
	"fmt"
	"time"

	"github.com/numberd/numberd/internal/segment"
	"github.com/numberd/numberd/internal/store"
)

// redisIdemTTL is how long Redis keeps an idempotency record: the store keeps it
// for IdempotencyTTL, and Redis's copy only has to make concurrent requests with
// one key agree until the store's is written.
const redisIdemTTL = 10 * time.Minute

// replay answers req from the store's idempotency record of its key, if there is
// one: it holds even when Redis lost its own.
func (e *Distributed) replay(ctx context.Context, p *rpool, req Request) (Allocation, bool, error) {
	key := req.Idempotency
	rec, err := e.lookup.do(ctx, store.IdempotencyRecord{Pool: p.id, Scope: key.Scope, Key: key.Key})
	if err != nil || rec.Key == "" {
		return Allocation{}, false, err
	}
	a, err := e.recorded(p, req, rec)
	return a, true, err
}

// recorded is the answer rec holds for req.
func (e *Distributed) recorded(p *rpool, req Request, rec store.IdempotencyRecord) (Allocation, error) {
	if rec.Fingerprint != req.fingerprint() {
		return Allocation{}, fmt.Errorf("%w: key %q was used with %s", ErrIdempotencyConflict, req.Idempotency.Key, rec.Fingerprint)
	}
	spans, err := decodeSpans(rec.Answer, p.digits)
	if err != nil {
		return Allocation{}, err
	}
	return Allocation{Pool: p.id, Spans: spans, Replayed: true}, nil
}

// keep makes a's numbers req's key's in the store before they are answered, and
// returns what the key holds: a, or the answer another request stored first
// (then a's numbers, if this request took them, are abandoned). If the store
// cannot be written, nothing is answered; the numbers stay with the key in Redis,
// where a retry finds them, and the resolver writes them to the store later.
func (e *Distributed) keep(ctx context.Context, p *rpool, req Request, a Allocation) (Allocation, error) {
	rec := e.record(p, req, a.Spans)
	held, err := e.idem.do(ctx, rec)
	if err != nil {
		e.unsure.add(unsettledCall{pool: p, record: &rec, since: time.Now()})
		return Allocation{}, fmt.Errorf("%w: the idempotency record could not be stored: %v", ErrOutcomeUnknown, err)
	}
	if held.Answer == rec.Answer {
		return a, nil
	}
	if !a.Replayed {
		if _, err := e.abandon(ctx, p, a.Spans); err != nil {
			e.unsure.add(unsettledCall{pool: p, lost: a.Spans, since: time.Now()})
		}
	}
	return e.recorded(p, req, held)
}

func (e *Distributed) record(p *rpool, req Request, spans []segment.Range) store.IdempotencyRecord {
	now := e.opts.Now()
	return store.IdempotencyRecord{
		Pool: p.id, Scope: req.Idempotency.Scope, Key: req.Idempotency.Key, Fingerprint: req.fingerprint(),
		Answer: encodeSpans(spans), CreatedAt: now, ExpiresAt: now.Add(IdempotencyTTL),
	}
}

// abandon records spans, taken but never handed out, as abandoned gaps, and
// returns how many numbers it recorded. Recording again what is recorded adds
// nothing, so a failed abandon is retried whole.
func (e *Distributed) abandon(ctx context.Context, p *rpool, spans []segment.Range) (int64, error) {
	var n int64
	for _, r := range spans {
		seg, err := e.segmentOf(ctx, p, r)
		if err != nil {
			return n, err
		}
		gaps, err := e.store.AddGapOutside(ctx, store.Gap{Pool: p.id, SegmentID: seg, Range: r, Reason: store.GapAbandoned})
		if err != nil {
			return n, err
		}
		for _, g := range gaps {
			n += g.Count()
			e.opts.Metrics.GapNumbers.WithLabelValues(p.id, store.GapAbandoned).Add(float64(g.Count()))
		}
	}
	return n, nil
}

// segmentOf finds the segment of p that holds r.
func (e *Distributed) segmentOf(ctx context.Context, p *rpool, r segment.Range) (int64, error) {
	for pass := 0; pass < 2; pass++ {
		p.segMu.RLock()
		for id, s := range p.segs {
			if s.Range.Prefix == r.Prefix && s.Range.Lo <= r.Lo && r.Hi <= s.Range.Hi {
				p.segMu.RUnlock()
				return id, nil
			}
		}
		p.segMu.RUnlock()
		segs, err := e.store.Segments(ctx, p.id)
		if err != nil {
			return 0, err
		}
		p.remember(segs...)
	}
	return 0, fmt.Errorf("%w: no segment of pool %s holds %s..%s", ErrUnavailable, p.id, r.Start(), r.End())
}
