package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/api"
	"github.com/numberd/numberd/internal/segment"
)

// validPoolID reports whether id matches ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$.
func validPoolID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

func checkPoolID(id string) error {
	if !validPoolID(id) {
		return fmt.Errorf("%w: pool id %q must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", errInvalid, id)
	}
	return nil
}

// begin opens the work of a request on pool: the pool id is checked, the caller
// authorised (adminOnly: admins only), and the engine's work bounded by timeout.
func begin(ctx context.Context, timeout time.Duration, pool string, adminOnly bool) (context.Context, context.CancelFunc, error) {
	if err := checkPoolID(pool); err != nil {
		return nil, nil, err
	}
	if err := authorize(ctx, pool, adminOnly); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	return ctx, cancel, nil
}

// poolHandlers serves the operations on pools: their settings, status and refills.
type poolHandlers struct {
	engine    Engine
	refill    Refiller // nil when the server runs no refill worker
	upstreams map[string]bool
	timeout   time.Duration
	logger    *slog.Logger
}

// PutPool creates or updates a pool.
func (s *poolHandlers) PutPool(ctx context.Context, req api.PutPoolRequestObject) (api.PutPoolResponseObject, error) {
	if err := checkPoolID(req.Pool); err != nil {
		return nil, err
	}
	if req.Body == nil {
		return nil, fmt.Errorf("%w: a JSON body is required", errInvalid)
	}
	u, err := s.poolUpdate(*req.Body)
	if err != nil {
		return nil, err
	}
	ctx, cancel, err := begin(ctx, s.timeout, req.Pool, true)
	if err != nil {
		return nil, err
	}
	defer cancel()
	st, created, err := s.engine.PutPool(ctx, req.Pool, u)
	if err != nil {
		return nil, err
	}
	if err := s.withRefill(ctx, &st); err != nil {
		return nil, err
	}
	if created {
		s.logger.Info("pool created", "pool", req.Pool, "digits", st.Digits)
		return api.PutPool201JSONResponse(poolJSON(st)), nil
	}
	return api.PutPool200JSONResponse(poolJSON(st)), nil
}

func (s *poolHandlers) poolUpdate(spec api.PoolSpec) (numberd.PoolUpdate, error) {
	var u numberd.PoolUpdate
	if d := spec.Digits; d != nil {
		if !segment.ValidDigits(*d) {
			return u, fmt.Errorf("%w: digits must be 1..%d, got %d", errInvalid, segment.MaxDigits, *d)
		}
		u.Digits = d
	}
	if t := spec.RefillThreshold; t != nil {
		if *t < 0 {
			return u, fmt.Errorf("%w: refill_threshold must not be negative, got %d", errInvalid, *t)
		}
		u.RefillThreshold = new(int64(*t))
	}
	if q := spec.RefillQuantity; q != nil {
		if *q < 1 || int64(*q) > segment.MaxSize {
			return u, fmt.Errorf("%w: refill_quantity must be 1..%d (what one segment may hold), got %d", errInvalid, int64(segment.MaxSize), *q)
		}
		u.RefillQuantity = new(int64(*q))
	}
	if up := spec.Upstream; up != nil {
		if *up != "" && !s.upstreams[*up] {
			return u, fmt.Errorf("%w: upstream %q is not configured", errInvalid, *up)
		}
		u.Upstream = up
	}
	return u, nil
}

// GetPool answers a pool's status.
func (s *poolHandlers) GetPool(ctx context.Context, req api.GetPoolRequestObject) (api.GetPoolResponseObject, error) {
	ctx, cancel, err := begin(ctx, s.timeout, req.Pool, false)
	if err != nil {
		return nil, err
	}
	defer cancel()
	st, err := s.engine.Pool(ctx, req.Pool)
	if err != nil {
		return nil, err
	}
	if err := s.withRefill(ctx, &st); err != nil {
		return nil, err
	}
	return api.GetPool200JSONResponse(poolJSON(st)), nil
}

// ListPools answers every pool the caller may see.
func (s *poolHandlers) ListPools(ctx context.Context, _ api.ListPoolsRequestObject) (api.ListPoolsResponseObject, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	all, err := s.engine.Pools(ctx)
	if err != nil {
		return nil, err
	}
	id := identityOf(ctx)
	out := api.PoolList{Pools: []api.Pool{}}
	for _, st := range all {
		if !id.mayUse(st.ID) {
			continue
		}
		if err := s.withRefill(ctx, &st); err != nil {
			return nil, err
		}
		out.Pools = append(out.Pools, poolJSON(st))
	}
	return api.ListPools200JSONResponse(out), nil
}

func poolJSON(st numberd.PoolStatus) api.Pool {
	p := api.Pool{
		Pool: st.ID, Digits: st.Digits, RefillThreshold: int(st.RefillThreshold),
		Available: strconv.FormatInt(st.Available, 10), Issued: strconv.FormatInt(st.Issued, 10),
		QueuedSegments: st.Queued, Refill: refillJSON(st.Refill),
	}
	if st.Upstream != "" {
		p.Upstream = new(st.Upstream)
	}
	if st.RefillQuantity > 0 {
		p.RefillQuantity = new(int(st.RefillQuantity))
	}
	if a := st.Active; a != nil {
		p.ActiveSegment = &api.ActiveSegment{
			ID: strconv.FormatInt(a.ID, 10), Start: a.Range.Start(), End: a.Range.End(), Next: a.Range.Format(a.Next),
		}
	}
	return p
}

// withRefill puts the refill worker's view of the pool's refill into st.
func (s *poolHandlers) withRefill(ctx context.Context, st *numberd.PoolStatus) error {
	if s.refill == nil {
		return nil
	}
	r, err := s.refill.Status(ctx, st.ID)
	if err != nil {
		return err
	}
	st.Refill = r
	return nil
}

func refillJSON(r numberd.RefillStatus) api.RefillStatus {
	out := api.RefillStatus{State: api.RefillStatusState(r.State), UpdatedAt: r.UpdatedAt, EffectiveThreshold: r.EffectiveThreshold}
	if r.Ywlsh != "" {
		out.Ywlsh = new(r.Ywlsh)
	}
	if r.LastError != "" {
		out.LastError = new(r.LastError)
	}
	return out
}

// StartRefill starts a download of the next segment from the pool's upstream.
func (s *poolHandlers) StartRefill(ctx context.Context, req api.StartRefillRequestObject) (api.StartRefillResponseObject, error) {
	ctx, cancel, err := begin(ctx, s.timeout, req.Pool, true)
	if err != nil {
		return nil, err
	}
	defer cancel()
	st, err := s.engine.Pool(ctx, req.Pool)
	if err != nil {
		return nil, err
	}
	if st.Upstream == "" {
		return nil, fmt.Errorf("%w: pool %s has no upstream to refill from; load segments by hand", errInvalid, req.Pool)
	}
	if s.refill == nil {
		return nil, fmt.Errorf("%w: this server runs no refill worker", errInvalid)
	}
	r, err := s.refill.Trigger(ctx, req.Pool)
	if err != nil {
		return nil, err
	}
	return api.StartRefill202JSONResponse(refillJSON(r)), nil
}
