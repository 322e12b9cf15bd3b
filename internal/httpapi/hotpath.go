package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/numberd/numberd/api"
)

// hotPath is the generated server with allocation's request body decoded by hand.
// The generated handler reads every body, an empty one too, through a new
// json.Decoder and its buffer; allocation bodies are empty or {"count": n}, which
// are read here without allocating, and anything else goes through the same
// strict decoding as before.
type hotPath struct {
	api.ServerInterface
	s *Server
}

// AllocateNumbers serves POST /v1/pools/{pool}/numbers.
func (h hotPath) AllocateNumbers(w http.ResponseWriter, r *http.Request, pool api.PoolID, params api.AllocateNumbersParams) {
	req := api.AllocateNumbersRequestObject{Pool: pool, Params: params}
	if b, ok := r.Body.(*bufferedBody); ok {
		body, err := decodeAllocate(b.data)
		if err != nil {
			h.s.requestError(w, r, err)
			return
		}
		req.Body = body
	} else if r.Body != nil && r.Body != http.NoBody {
		h.ServerInterface.AllocateNumbers(w, r, pool, params) // not read up front: the generated way
		return
	}
	resp, err := h.s.AllocateNumbers(r.Context(), req)
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	if err := resp.VisitAllocateNumbersResponse(w); err != nil {
		h.s.logger.Debug("writing an allocation failed", "err", err)
	}
}

// decodeAllocate decodes an allocation body, already checked to be one JSON value:
// nil for none, {"count": n} by hand, the rest strictly.
func decodeAllocate(data []byte) (*api.AllocateRequest, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, nil
	}
	if n, ok := countOnly(data); ok {
		return &api.AllocateRequest{Count: &n}, nil
	}
	var body api.AllocateRequest
	if err := json.Unmarshal(data, &body); err != nil {
		return nil, err
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
