package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/numberd/numberd/api"
)

// allocationRoute is the allocation route's pattern: its metrics' label.
const allocationRoute = "/v1/pools/{pool}/numbers"

// maxHotBody is the longest allocation body the hot path reads; allocation bodies
// are {"count": n}, and a longer one goes the general way.
const maxHotBody = 256

// hotAllocation returns the pool of a request the hot path serves: POST
// /v1/pools/{pool}/numbers with a valid pool id spelt without escapes, a body of
// known and small length, and at most one Idempotency-Key. Every other request,
// this route's odd ones included, goes through the router, the middlewares and
// the generated server, which answer it as the contract says.
//
// The hot path exists because the general way — routing, four middlewares, a
// copy of the request for its context, the generated server's reflective
// parameter binding — cost about as much as the allocation itself.
func hotAllocation(r *http.Request) (string, bool) {
	if r.Method != http.MethodPost || r.URL.RawPath != "" || r.ContentLength < 0 || r.ContentLength > maxHotBody {
		return "", false
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1/pools/")
	if !ok {
		return "", false
	}
	pool, ok := strings.CutSuffix(rest, "/numbers")
	if !ok || !validPoolID(pool) || len(r.Header["Idempotency-Key"]) > 1 {
		return "", false
	}
	return pool, true
}

var hotBodies = sync.Pool{New: func() any { b := make([]byte, maxHotBody); return &b }}

// serveAllocation serves what hotAllocation accepted, with the answers, checks in
// the same order, metrics and logs of the general way.
func (s *Server) serveAllocation(w http.ResponseWriter, r *http.Request, pool string) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		if v := recover(); v != nil {
			s.answerPanic(sw, r, allocationRoute, v)
		}
		s.account(r, allocationRoute, sw.status, start)
	}()
	id := s.auth.identify(r)
	if id == nil {
		s.failAt(sw, r, allocationRoute, errUnauthorizedAnswer)
		return
	}
	req := api.AllocateNumbersRequestObject{Pool: pool}
	if key := r.Header["Idempotency-Key"]; len(key) == 1 {
		req.Params.IdempotencyKey = &key[0]
	}
	defer quiet(r.Context())()
	if r.ContentLength > 0 {
		bufp := hotBodies.Get().(*[]byte)
		defer hotBodies.Put(bufp)
		data := (*bufp)[:r.ContentLength]
		if _, err := io.ReadFull(r.Body, data); err != nil {
			s.failAt(sw, r, allocationRoute, fmt.Errorf("%w: reading the body: %v", errInvalid, err))
			return
		}
		body, err := decodeAllocate(data)
		if err != nil {
			s.failAt(sw, r, allocationRoute, err)
			return
		}
		req.Body = body
	}
	resp, err := s.allocate(r.Context(), id, req)
	if err != nil {
		s.failAt(sw, r, allocationRoute, err)
		return
	}
	if err := resp.VisitAllocateNumbersResponse(sw); err != nil {
		s.logger.Debug("writing an allocation failed", "err", err)
	}
}

// decodeAllocate decodes an allocation body: nil for none, {"count": n} by hand,
// the rest strictly, with the general way's answers to a body that is not one JSON
// value or does not decode.
func decodeAllocate(data []byte) (*api.AllocateRequest, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, nil
	}
	if n, ok := countOnly(data); ok {
		return &api.AllocateRequest{Count: &n}, nil
	}
	if !json.Valid(data) {
		return nil, errNotOneJSONValue
	}
	var body api.AllocateRequest
	if err := json.Unmarshal(data, &body); err != nil {
		return nil, decodeError(err)
	}
	return &body, nil
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

// hotPath is the generated server with allocation bodies decoded as the hot path
// decodes them, for the allocation requests the hot path leaves to the general way.
type hotPath struct {
	api.ServerInterface
	s *Server
}

// AllocateNumbers serves POST /v1/pools/{pool}/numbers.
func (h hotPath) AllocateNumbers(w http.ResponseWriter, r *http.Request, pool api.PoolID, params api.AllocateNumbersParams) {
	b, ok := r.Body.(*bufferedBody)
	if !ok && r.Body != nil && r.Body != http.NoBody {
		h.ServerInterface.AllocateNumbers(w, r, pool, params) // not read up front: the generated way
		return
	}
	req := api.AllocateNumbersRequestObject{Pool: pool, Params: params}
	if ok {
		body, err := decodeAllocate(b.data)
		if err != nil {
			h.s.writeError(w, r, err)
			return
		}
		req.Body = body
	}
	resp, err := h.s.allocate(r.Context(), identityOf(r.Context()), req)
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	if err := resp.VisitAllocateNumbersResponse(w); err != nil {
		h.s.logger.Debug("writing an allocation failed", "err", err)
	}
}
