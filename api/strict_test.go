package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/numberd/numberd/api"
)

// body is one of the three strictly decoded request bodies.
type body interface{ UnmarshalJSON([]byte) error }

func TestStrictDecodeRejects(t *testing.T) {
	tests := []struct {
		name string
		into func() body
		data string
		want string // substring of the error
	}{
		{"pool unknown field", func() body { return new(api.PoolSpec) }, `{"digits":20,"colour":"red"}`, `unknown field "colour"`},
		{"pool field in other case", func() body { return new(api.PoolSpec) }, `{"Digits":20}`, `unknown field "Digits"`},
		{"pool digits bool", func() body { return new(api.PoolSpec) }, `{"digits":true}`, `field "digits": must be an integer`},
		{"pool digits string", func() body { return new(api.PoolSpec) }, `{"digits":"20"}`, `field "digits": must be an integer`},
		{"pool threshold fraction", func() body { return new(api.PoolSpec) }, `{"refill_threshold":0.5}`, `field "refill_threshold": must be an integer`},
		{"pool upstream number", func() body { return new(api.PoolSpec) }, `{"upstream":7}`, `field "upstream": must be a string`},
		{"pool upstream null", func() body { return new(api.PoolSpec) }, `{"upstream":null}`, `field "upstream": must not be null`},
		{"pool array", func() body { return new(api.PoolSpec) }, `[{"digits":20}]`, `must be a JSON object, not an array`},
		{"segment unknown field", func() body { return new(api.SegmentSpec) }, `{"start":"1","end":"2","size":"2"}`, `unknown field "size"`},
		{"segment start number", func() body { return new(api.SegmentSpec) }, `{"start":1,"end":"2"}`, `field "start": must be a string`},
		{"segment expires_at not a date", func() body { return new(api.SegmentSpec) }, `{"start":"1","end":"2","expires_at":"tomorrow"}`, `field "expires_at": must be an RFC 3339 date-time string`},
		{"segment expires_at number", func() body { return new(api.SegmentSpec) }, `{"start":"1","end":"2","expires_at":1}`, `field "expires_at": must be an RFC 3339 date-time string`},
		{"count unknown field", func() body { return new(api.AllocateRequest) }, `{"count":1,"pool":"x"}`, `unknown field "pool"`},
		{"count string", func() body { return new(api.AllocateRequest) }, `{"count":"5"}`, `field "count": must be an integer, got string`},
		{"count fraction", func() body { return new(api.AllocateRequest) }, `{"count":1.5}`, `field "count": must be an integer, got number 1.5`},
		{"count bool", func() body { return new(api.AllocateRequest) }, `{"count":true}`, `field "count": must be an integer, got bool`},
		{"count overflow", func() body { return new(api.AllocateRequest) }, `{"count":99999999999999999999}`, `field "count": must be an integer`},
		{"count null", func() body { return new(api.AllocateRequest) }, `{"count":null}`, `field "count": must not be null`},
		{"count twice", func() body { return new(api.AllocateRequest) }, `{"count":1,"count":1000}`, `duplicate field "count"`},
		{"null body", func() body { return new(api.AllocateRequest) }, `null`, `must be a JSON object, not null`},
		{"number body", func() body { return new(api.AllocateRequest) }, `5`, `must be a JSON object, not a number`},
		{"trailing object", func() body { return new(api.AllocateRequest) }, `{"count":1} {"count":2}`, `unexpected data after the JSON object`},
		{"trailing garbage", func() body { return new(api.AllocateRequest) }, `{} x`, `unexpected data after the JSON object`},
		{"truncated", func() body { return new(api.AllocateRequest) }, `{"count":`, `malformed JSON`},
		{"empty", func() body { return new(api.AllocateRequest) }, ``, `malformed JSON`},
		{"not JSON", func() body { return new(api.AllocateRequest) }, `count=1`, `malformed JSON`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.into().UnmarshalJSON([]byte(tt.data))
			if err == nil {
				t.Fatalf("UnmarshalJSON(%s): got nil error, want one containing %q", tt.data, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("UnmarshalJSON(%s): got %q, want it to contain %q", tt.data, err, tt.want)
			}
			// The generated strict handler reads io.EOF as "no body": never return it.
			if errors.Is(err, io.EOF) {
				t.Errorf("UnmarshalJSON(%s): got %q, which wraps io.EOF", tt.data, err)
			}
		})
	}
}

func TestStrictDecodeThroughEncodingJSON(t *testing.T) {
	// The path the generated code takes: json.Decoder.Decode calls UnmarshalJSON.
	for _, data := range []string{`{"count":"5"}`, `{"count":1.5}`, `{"cnt":1}`, `null`} {
		var req api.AllocateRequest
		if err := json.NewDecoder(strings.NewReader(data)).Decode(&req); err == nil {
			t.Errorf("Decode(%s): got nil error, want one", data)
		}
	}
	var spec api.PoolSpec
	if err := json.Unmarshal([]byte(`{"digits":true}`), &spec); err == nil {
		t.Error(`Unmarshal({"digits":true}): got nil error, want one`)
	}
}

func TestStrictDecodeAccepts(t *testing.T) {
	t.Run("pool", func(t *testing.T) {
		var got api.PoolSpec
		data := `{"digits": 20, "refill_threshold": 0, "upstream": "leqi", "refill_quantity": 1000}`
		if err := json.Unmarshal([]byte(data), &got); err != nil {
			t.Fatalf("Unmarshal(%s): %v", data, err)
		}
		if got.Digits == nil || *got.Digits != 20 || got.RefillThreshold == nil || *got.RefillThreshold != 0 ||
			got.Upstream == nil || *got.Upstream != "leqi" || got.RefillQuantity == nil || *got.RefillQuantity != 1000 {
			t.Errorf("Unmarshal(%s): got %+v", data, got)
		}
	})
	t.Run("empty pool", func(t *testing.T) {
		var got api.PoolSpec
		if err := json.Unmarshal([]byte(` { } `), &got); err != nil {
			t.Fatalf("Unmarshal({}): %v", err)
		}
		if got != (api.PoolSpec{}) {
			t.Errorf("Unmarshal({}): got %+v, want the zero PoolSpec", got)
		}
	})
	t.Run("segment", func(t *testing.T) {
		var got api.SegmentSpec
		data := `{"start": "24442000000000000001", "end": "24442000000000001000", "ref": "grant 7",
			"expires_at": "2026-12-31T23:59:59+08:00"}`
		if err := json.Unmarshal([]byte(data), &got); err != nil {
			t.Fatalf("Unmarshal(%s): %v", data, err)
		}
		wantExpiry := time.Date(2026, 12, 31, 15, 59, 59, 0, time.UTC)
		if got.Start != "24442000000000000001" || got.End != "24442000000000001000" ||
			got.Ref == nil || *got.Ref != "grant 7" || got.ExpiresAt == nil || !got.ExpiresAt.Equal(wantExpiry) {
			t.Errorf("Unmarshal(%s): got %+v", data, got)
		}
	})
	t.Run("count", func(t *testing.T) {
		for data, want := range map[string]*int{`{"count": 1000}`: ptr(1000), `{}`: nil} {
			var got api.AllocateRequest
			if err := json.Unmarshal([]byte(data), &got); err != nil {
				t.Fatalf("Unmarshal(%s): %v", data, err)
			}
			if (got.Count == nil) != (want == nil) || (want != nil && *got.Count != *want) {
				t.Errorf("Unmarshal(%s): got %+v, want count %v", data, got, want)
			}
		}
	})
}

// allocOnly is a StrictServerInterface that implements only AllocateNumbers.
type allocOnly struct {
	api.StrictServerInterface
	allocate func(api.AllocateNumbersRequestObject) (api.AllocateNumbersResponseObject, error)
}

func (s allocOnly) AllocateNumbers(_ context.Context, req api.AllocateNumbersRequestObject) (api.AllocateNumbersResponseObject, error) {
	return s.allocate(req)
}

func TestGeneratedHandlerAllocateBody(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		wantCode int // 200: the handler ran; 400: RequestErrorHandlerFunc answered
		wantBody *api.AllocateRequest
	}{
		{"no body", "", http.StatusOK, nil},
		{"whitespace only", " \n", http.StatusOK, nil},
		{"empty object", "{}", http.StatusOK, &api.AllocateRequest{}},
		{"count", `{"count":3}`, http.StatusOK, &api.AllocateRequest{Count: ptr(3)}},
		{"count string", `{"count":"3"}`, http.StatusBadRequest, nil},
		{"unknown field", `{"n":3}`, http.StatusBadRequest, nil},
		{"null", `null`, http.StatusBadRequest, nil},
		{"truncated", `{"count":3`, http.StatusBadRequest, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got api.AllocateNumbersRequestObject
			ssi := allocOnly{allocate: func(req api.AllocateNumbersRequestObject) (api.AllocateNumbersResponseObject, error) {
				got = req
				return api.AllocateNumbers200JSONResponse{Body: api.Allocation{Pool: req.Pool, Numbers: []string{"01"}}}, nil
			}}
			h := api.HandlerWithOptions(api.NewStrictHandlerWithOptions(ssi, nil, api.StrictHTTPServerOptions{}), api.ChiServerOptions{})
			req := httptest.NewRequest(http.MethodPost, "/v1/pools/acme-vat/numbers", strings.NewReader(tt.body))
			req.Header.Set("Idempotency-Key", "k1")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantCode {
				t.Fatalf("POST %q: got status %d (%s), want %d", tt.body, rec.Code, rec.Body, tt.wantCode)
			}
			if tt.wantCode != http.StatusOK {
				return
			}
			if got.Pool != "acme-vat" || got.Params.IdempotencyKey == nil || *got.Params.IdempotencyKey != "k1" {
				t.Errorf("POST %q: got request %+v", tt.body, got)
			}
			switch {
			case (got.Body == nil) != (tt.wantBody == nil):
				t.Errorf("POST %q: got body %+v, want %+v", tt.body, got.Body, tt.wantBody)
			case got.Body != nil && !equalCount(got.Body.Count, tt.wantBody.Count):
				t.Errorf("POST %q: got count %v, want %v", tt.body, got.Body.Count, tt.wantBody.Count)
			}
			if h := rec.Header().Get("Idempotent-Replayed"); h != "" {
				t.Errorf("POST %q: got Idempotent-Replayed %q on a first answer, want none", tt.body, h)
			}
		})
	}
}

// The paths of the REST contract, by method and path, with their operationIds. None
// is renamed; a path the spec adds is added here too.
var wantOperations = map[string]string{
	"PUT /v1/pools/{pool}":                       "putPool",
	"GET /v1/pools":                              "listPools",
	"GET /v1/pools/{pool}":                       "getPool",
	"POST /v1/pools/{pool}/segments":             "loadSegment",
	"GET /v1/pools/{pool}/segments":              "listSegments",
	"POST /v1/pools/{pool}/segments/{id}/retire": "retireSegment",
	"GET /v1/pools/{pool}/gaps":                  "listGaps",
	"POST /v1/pools/{pool}/numbers":              "allocateNumbers",
	"POST /v1/pools/{pool}/refill":               "startRefill",
	"GET /healthz":                               "healthz",
	"GET /readyz":                                "readyz",
	"GET /metrics":                               "metrics",
	"GET /openapi.yaml":                          "openapi",
	// Added to the contract: the runtime profiles, for admins.
	"GET /debug/pprof/{profile}": "pprof",
}

func TestSpec(t *testing.T) {
	var doc map[string]any
	if err := yaml.Unmarshal(api.Spec, &doc); err != nil {
		t.Fatalf("api.Spec is not YAML: %v", err)
	}
	if got := doc["openapi"]; got != "3.0.3" {
		t.Errorf("openapi: got %v, want 3.0.3", got)
	}

	got := map[string]string{}
	paths, _ := doc["paths"].(map[string]any)
	for path, item := range paths {
		for method, op := range item.(map[string]any) {
			if method == "parameters" {
				continue
			}
			id, _ := op.(map[string]any)["operationId"].(string)
			if id == "" {
				t.Errorf("%s %s: no operationId", method, path)
			}
			got[strings.ToUpper(method)+" "+path] = id
		}
	}
	for op, id := range wantOperations {
		if got[op] != id {
			t.Errorf("%s: got operationId %q, want %q", op, got[op], id)
		}
	}
	for op := range got {
		if _, ok := wantOperations[op]; !ok {
			t.Errorf("%s: not in the contract's paths", op)
		}
	}

	// Every $ref resolves to a node of the document.
	var refs []string
	collectRefs(doc, &refs)
	if len(refs) == 0 {
		t.Fatal("no $ref in the spec")
	}
	for _, ref := range refs {
		if _, err := resolve(doc, ref); err != nil {
			t.Errorf("$ref %q: %v", ref, err)
		}
	}

	// Every error code of the contract is in Problem.code.
	codes, err := resolve(doc, "#/components/schemas/Problem/properties/code/enum")
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range []string{"invalid_argument", "unauthorized", "forbidden", "pool_not_found",
		"segment_not_found", "not_found", "method_not_allowed", "segment_overlap", "idempotency_conflict",
		"body_too_large", "pool_exhausted", "unavailable"} {
		if !slices.Contains(codes.([]any), any(code)) {
			t.Errorf("Problem.code: %q missing", code)
		}
	}
}

func collectRefs(node any, refs *[]string) {
	switch n := node.(type) {
	case map[string]any:
		for k, v := range n {
			if s, ok := v.(string); ok && k == "$ref" {
				*refs = append(*refs, s)
				continue
			}
			collectRefs(v, refs)
		}
	case []any:
		for _, v := range n {
			collectRefs(v, refs)
		}
	}
}

// resolve follows a local JSON pointer ("#/a/b") through doc.
func resolve(doc map[string]any, ref string) (any, error) {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, errors.New("not a local reference")
	}
	var node any = doc
	for _, tok := range strings.Split(rest, "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		m, ok := node.(map[string]any)
		if !ok {
			return nil, errors.New("walks through a non-object at " + tok)
		}
		if node, ok = m[tok]; !ok {
			return nil, errors.New("no member " + tok)
		}
	}
	return node, nil
}

func ptr[T any](v T) *T { return &v }

func equalCount(a, b *int) bool { return (a == nil && b == nil) || (a != nil && b != nil && *a == *b) }
