package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/go-chi/chi/v5"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/api"
)

// maxIdempotencyKey is the longest Idempotency-Key accepted.
const maxIdempotencyKey = 128

// allocationRoute is the allocation route's pattern.
const allocationRoute = "/v1/pools/{pool}/numbers"

// allocationHandlers hands out numbers, for the generated handler and for
// serveAllocation alike.
type allocationHandlers struct {
	engine Engine
	refill Refiller // nil when the server runs no refill worker
}

// AllocateNumbers hands out the next number(s) of a pool. The router serves the
// route with serveAllocation; the generated handler, which calls this, is what
// the tests compare serveAllocation with.
func (s *allocationHandlers) AllocateNumbers(ctx context.Context, req api.AllocateNumbersRequestObject) (api.AllocateNumbersResponseObject, error) {
	count := 1
	if req.Body != nil && req.Body.Count != nil {
		count = *req.Body.Count
	}
	a, err := s.allocate(ctx, identityOf(ctx), req.Pool, count, req.Params.IdempotencyKey)
	if err != nil {
		return nil, err
	}
	return allocation(a), nil
}

// allocate hands out count numbers of pool to the caller id, under the
// Idempotency-Key key if it is not nil.
func (s *allocationHandlers) allocate(ctx context.Context, id *identity, pool string, count int, key *string) (numberd.Allocation, error) {
	if err := checkPoolID(pool); err != nil {
		return numberd.Allocation{}, err
	}
	if count < 1 || count > numberd.MaxCount {
		return numberd.Allocation{}, fmt.Errorf("%w: count must be 1..%d, got %d", errInvalid, numberd.MaxCount, count)
	}
	if key != nil {
		if err := checkIdempotencyKey(*key); err != nil {
			return numberd.Allocation{}, err
		}
	}
	if err := id.authorize(pool, false); err != nil {
		return numberd.Allocation{}, err
	}
	areq := numberd.Request{Pool: pool, Count: count}
	if key != nil {
		areq.Idempotency = &numberd.Idempotency{Scope: id.scope, Key: *key}
	}
	// No deadline of its own: the engines bound every wait on the allocation path
	// (store and Redis timeouts), and a deadline per request costs a timer.
	a, err := s.engine.Allocate(ctx, areq)
	if errors.Is(err, numberd.ErrExhausted) && s.refill != nil {
		if r, rerr := s.refill.Status(ctx, pool); rerr == nil && r.State == numberd.RefillRequesting {
			return numberd.Allocation{}, &retryLater{err: err, seconds: 1}
		}
	}
	return a, err
}

// serveAllocation serves POST /v1/pools/{pool}/numbers in place of the generated
// handler, whose reflective binding of the path, the header and the body cost
// about as much as the allocation itself. It makes the same checks in the same
// order and answers the same errors.
func (s *Server) serveAllocation(w http.ResponseWriter, r *http.Request) {
	pool, err := poolParam(r)
	if err != nil {
		s.paramError(w, r, err)
		return
	}
	var key *string
	if keys, ok := r.Header["Idempotency-Key"]; ok {
		if len(keys) != 1 {
			s.paramError(w, r, &api.TooManyValuesForParamError{ParamName: "Idempotency-Key", Count: len(keys)})
			return
		}
		key = &keys[0]
	}
	data, err := bodyBytes(r)
	if err != nil {
		s.requestError(w, r, err)
		return
	}
	count, err := decodeCount(data)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	a, err := s.ops.allocate(r.Context(), identityOf(r.Context()), pool, count, key)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// An answer that cannot be written has no one to be told.
	if err := allocation(a).VisitAllocateNumbersResponse(w); err != nil {
		s.logger.Debug("writing an allocation failed", "err", err)
	}
}

// poolParam returns the route's pool id with the generated binding's errors: it
// is unescaped when the path was, and never empty.
func poolParam(r *http.Request) (string, error) {
	pool := chi.URLParam(r, "pool")
	if pool == "" {
		return "", &api.InvalidParamFormatError{ParamName: "pool", Err: errors.New("parameter 'pool' is empty, can't bind its value")}
	}
	if r.URL.RawPath == "" { // chi routed on the unescaped path
		return pool, nil
	}
	pool, err := url.PathUnescape(pool)
	if err != nil {
		return "", &api.InvalidParamFormatError{ParamName: "pool", Err: fmt.Errorf("error unescaping path parameter 'pool': %w", err)}
	}
	return pool, nil
}

// bodyBytes returns the request's body: limitBody's buffer, or what is left to
// read of a body it did not read.
func bodyBytes(r *http.Request) ([]byte, error) {
	if b, ok := r.Body.(*bufferedBody); ok {
		return b.data, nil
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	return io.ReadAll(r.Body)
}

// decodeCount returns the count an allocation body asks for, 1 if none: it reads
// {"count": n} by hand, the rest strictly, with the generated decoder's answers
// to a body that is not one JSON value or does not decode.
func decodeCount(data []byte) (int, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return 1, nil
	}
	if n, ok := countOnly(data); ok {
		return n, nil
	}
	if !json.Valid(data) {
		return 0, errNotOneJSONValue
	}
	var body api.AllocateRequest
	if err := json.Unmarshal(data, &body); err != nil {
		return 0, decodeError(err)
	}
	if body.Count == nil {
		return 1, nil
	}
	return *body.Count, nil
}

// countOnly reads exactly {"count":<digits>}, white space allowed between tokens.
func countOnly(b []byte) (int, bool) {
	i := 0
	skip := func() {
		for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
			i++
		}
	}
	expect := func(s string) bool {
		skip()
		if !bytes.HasPrefix(b[i:], []byte(s)) {
			return false
		}
		i += len(s)
		return true
	}
	if !expect("{") || !expect(`"count"`) || !expect(":") {
		return 0, false
	}
	skip()
	n, digits := 0, 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' && digits < 9 {
		n = n*10 + int(b[i]-'0')
		i++
		digits++
	}
	if digits == 0 || (i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E' || (b[i] >= '0' && b[i] <= '9'))) {
		return 0, false
	}
	if !expect("}") {
		return 0, false
	}
	skip()
	return n, i == len(b)
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

// allocation writes an allocation's answer straight from its spans: it formats
// numbers into one pooled buffer instead of building a []string.
type allocation numberd.Allocation

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
