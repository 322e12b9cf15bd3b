package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/numberd/numberd/api"
	"github.com/numberd/numberd/internal/alloc"
)

// maxIdempotencyKey is the longest Idempotency-Key accepted.
const maxIdempotencyKey = 128

// AllocateNumbers hands out the next number(s) of a pool.
func (s *Server) AllocateNumbers(ctx context.Context, req api.AllocateNumbersRequestObject) (api.AllocateNumbersResponseObject, error) {
	return s.allocate(ctx, identityOf(ctx), req)
}

// allocate is AllocateNumbers for the caller id.
func (s *Server) allocate(ctx context.Context, id *identity, req api.AllocateNumbersRequestObject) (api.AllocateNumbersResponseObject, error) {
	if err := checkPoolID(req.Pool); err != nil {
		return nil, err
	}
	count := 1
	if req.Body != nil && req.Body.Count != nil {
		count = *req.Body.Count
	}
	if count < 1 || count > alloc.MaxCount {
		return nil, fmt.Errorf("%w: count must be 1..%d, got %d", errInvalid, alloc.MaxCount, count)
	}
	key := req.Params.IdempotencyKey
	if key != nil {
		if err := checkIdempotencyKey(*key); err != nil {
			return nil, err
		}
	}
	if err := id.authorize(req.Pool, false); err != nil {
		return nil, err
	}
	areq := alloc.Request{Pool: req.Pool, Count: count}
	if key != nil {
		areq.Idempotency = &alloc.Idempotency{Scope: id.scope, Key: *key}
	}
	// No deadline of its own: the engines bound every wait on the allocation path
	// (store and Redis timeouts), and a deadline per request costs a timer.
	a, err := s.engine.Allocate(ctx, areq)
	if errors.Is(err, alloc.ErrExhausted) && s.refill != nil {
		if r, rerr := s.refill.Status(ctx, req.Pool); rerr == nil && r.State == alloc.RefillRequesting {
			return nil, &retryLater{err: err, seconds: 1}
		}
	}
	if err != nil {
		return nil, err
	}
	return allocation(a), nil
}

// retryLater is an error whose answer tells the caller when to try again: a pool
// exhausted while its refill is under way.
type retryLater struct {
	err     error
	seconds int
}

func (e *retryLater) Error() string { return e.err.Error() }
func (e *retryLater) Unwrap() error { return e.err }

func checkIdempotencyKey(key string) error {
	if len(key) == 0 || len(key) > maxIdempotencyKey {
		return fmt.Errorf("%w: Idempotency-Key must be 1..%d characters", errInvalid, maxIdempotencyKey)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return fmt.Errorf("%w: Idempotency-Key must be printable ASCII", errInvalid)
		}
	}
	return nil
}

// allocation writes an allocation's answer straight from its spans: the hot path
// formats numbers into one pooled buffer instead of building a []string.
type allocation alloc.Allocation

var answerBuffers = sync.Pool{New: func() any { return new([]byte) }}

// Header values of every answer, shared rather than made per answer.
var (
	jsonType = []string{"application/json"}
	noStore  = []string{"no-store"}
	replayed = []string{"true"}
)

// VisitAllocateNumbersResponse writes the 200 answer.
func (a allocation) VisitAllocateNumbersResponse(w http.ResponseWriter) error {
	bufp := answerBuffers.Get().(*[]byte)
	buf := append((*bufp)[:0], `{"pool":`...)
	buf = strconv.AppendQuote(buf, a.Pool) // pool ids are plain ASCII
	buf = append(buf, `,"numbers":[`...)
	first := true
	for _, s := range a.Spans {
		for n := s.Lo; n <= s.Hi; n++ {
			if !first {
				buf = append(buf, ',')
			}
			first = false
			buf = append(buf, '"')
			buf = s.AppendFormat(buf, n)
			buf = append(buf, '"')
		}
	}
	buf = append(buf, "]}\n"...)
	h := w.Header()
	h["Content-Type"] = jsonType
	h["Cache-Control"] = noStore
	if a.Replayed {
		h["Idempotent-Replayed"] = replayed
	}
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(buf)
	*bufp = buf
	answerBuffers.Put(bufp)
	return err
}
