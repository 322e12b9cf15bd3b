package distributed

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/segment"
	"github.com/numberd/numberd/internal/store"
)

// recorder writes to the store what the allocate path decided: the answers of
// keyed requests, and the numbers taken but given up.
type recorder struct {
	store  stores
	opts   *alloc.Options
	pools  *catalog
	unsure *unsettled
	// Durable idempotency records are looked up and written in batches: a keyed
	// request costs the store a share of two round trips, not two of its own.
	lookup alloc.Combiner[store.IdempotencyRecord, store.IdempotencyRecord]
	idem   alloc.Combiner[store.IdempotencyRecord, store.IdempotencyRecord]
}

// redisIdemTTL is how long Redis keeps an idempotency record: the store keeps it
// for IdempotencyTTL, and Redis's copy only has to make concurrent requests with
// one key agree until the store's is written.
const redisIdemTTL = 10 * time.Minute

// stored is the store's record of req's key, or a zero record (empty Key) when
// there is none. It answers first, as it holds even when Redis lost its copy.
func (rc *recorder) stored(ctx context.Context, p *rpool, req numberd.Request) (store.IdempotencyRecord, error) {
	key := req.Idempotency
	return rc.lookup.Do(ctx, store.IdempotencyRecord{Pool: p.id, Scope: key.Scope, Key: key.Key})
}

// recorded is the answer rec holds for req.
func (rc *recorder) recorded(p *rpool, req numberd.Request, rec store.IdempotencyRecord) (numberd.Allocation, error) {
	if rec.Fingerprint != req.Fingerprint() {
		return numberd.Allocation{}, fmt.Errorf("%w: key %q was used with %s", numberd.ErrIdempotencyConflict, req.Idempotency.Key, rec.Fingerprint)
	}
	spans, err := alloc.DecodeSpans(rec.Answer, p.digits)
	if err != nil {
		return numberd.Allocation{}, err
	}
	return numberd.Allocation{Pool: p.id, Spans: spans, Replayed: true}, nil
}

// errTakeAfresh says a replayed answer's numbers were abandoned meanwhile: the
// request must take new numbers.
var errTakeAfresh = errors.New("alloc: the replayed numbers were abandoned")

// keep makes a's numbers req's key's in the store before they are answered, and
// returns what the key holds: a, or the answer another request stored first
// (then a's numbers, if this request took them, are abandoned). If the store
// cannot be written, nothing is answered, and the resolver later gives the
// numbers to the key or abandons them, whichever the store finds first (see
// settle). If a replayed numbers the store holds abandoned, it returns
// errTakeAfresh.
func (rc *recorder) keep(ctx context.Context, p *rpool, req numberd.Request, a numberd.Allocation) (numberd.Allocation, error) {
	rec := rc.record(p, req, a.Spans)
	rec.Fresh = !a.Replayed
	held, err := rc.idem.Do(ctx, rec)
	if err != nil {
		rc.unsure.add(unsettledCall{pool: p, record: &rec, since: time.Now()})
		return numberd.Allocation{}, fmt.Errorf("%w: the idempotency record could not be stored: %v", numberd.ErrOutcomeUnknown, err)
	}
	switch {
	case held.Answer == rec.Answer:
		return a, nil
	case held.Abandoned() && a.Replayed:
		// Redis still holds the numbers of a call the resolver gave up: they
		// are an abandoned gap, never to be handed out.
		return numberd.Allocation{}, errTakeAfresh
	case held.Abandoned():
		return numberd.Allocation{}, fmt.Errorf("%w: the store kept an abandoned record over new numbers of key %q", numberd.ErrRedisUnavailable, req.Idempotency.Key)
	}
	if !a.Replayed {
		if _, err := rc.abandon(ctx, p, a.Spans); err != nil {
			rc.unsure.add(unsettledCall{pool: p, lost: a.Spans, since: time.Now()})
		}
	}
	return rc.recorded(p, req, held)
}

func (rc *recorder) record(p *rpool, req numberd.Request, spans []segment.Range) store.IdempotencyRecord {
	now := rc.opts.Now()
	return store.IdempotencyRecord{
		Pool: p.id, Scope: req.Idempotency.Scope, Key: req.Idempotency.Key, Fingerprint: req.Fingerprint(),
		Answer: alloc.EncodeSpans(spans), CreatedAt: now, ExpiresAt: now.Add(numberd.IdempotencyTTL),
	}
}

// abandonedRecord is the abandoned record of rec's key: kept in the store unless
// the key holds a record already, it says rec's numbers were given up, so that
// no retry is answered them from a copy Redis still holds.
func abandonedRecord(rec store.IdempotencyRecord) store.IdempotencyRecord {
	rec.Answer, rec.Fresh = "", false
	return rec
}

// abandon records spans, taken but never handed out, as abandoned gaps, and
// returns how many numbers it recorded. Recording again what is recorded adds
// nothing, so a failed abandon is retried whole.
func (rc *recorder) abandon(ctx context.Context, p *rpool, spans []segment.Range) (int64, error) {
	return rc.skip(ctx, p, spans, numberd.GapAbandoned)
}

// skip records spans as gaps with reason, and returns how many numbers it
// recorded.
func (rc *recorder) skip(ctx context.Context, p *rpool, spans []segment.Range, reason string) (int64, error) {
	var n int64
	for _, r := range spans {
		seg, err := rc.pools.segmentOf(ctx, p, r)
		if err != nil {
			return n, err
		}
		gaps, err := rc.store.gaps.AddOutside(ctx, numberd.Gap{Pool: p.id, SegmentID: seg, Range: r, Reason: reason})
		if err != nil {
			return n, err
		}
		for _, g := range gaps {
			n += g.Count()
			rc.opts.Metrics.GapNumbers.WithLabelValues(p.id, reason).Add(float64(g.Count()))
		}
	}
	return n, nil
}
