package httpapi

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/segment"
)

// allocOnly is an engine that only allocates: from a fixed range, or with the
// error its pool's name asks for.
type allocOnly struct {
	Engine // nil: any other call panics
	next   segment.Range
}

func (e *allocOnly) Allocate(_ context.Context, req numberd.Request) (numberd.Allocation, error) {
	switch req.Pool {
	case "empty":
		return numberd.Allocation{}, fmt.Errorf("%w: 0 left", numberd.ErrExhausted)
	case "gone":
		return numberd.Allocation{}, fmt.Errorf("%w: %s", numberd.ErrPoolNotFound, req.Pool)
	case "down":
		return numberd.Allocation{}, fmt.Errorf("%w: dial tcp 10.0.0.1:6379: refused", numberd.ErrRedisUnavailable)
	case "boom":
		panic("engine bug")
	}
	span := e.next
	span.Hi = span.Lo + int64(req.Count) - 1
	return numberd.Allocation{Pool: req.Pool, Spans: []segment.Range{span}, Replayed: req.Idempotency != nil && req.Idempotency.Key == "again"}, nil
}

func newAllocOnlyServer(tb testing.TB) *Server {
	tb.Helper()
	r, err := segment.ParseRange("24442000000000000001", "24442000000000999999", 20)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := New(Config{
		Engine: &allocOnly{next: r}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Tokens: []Token{{Token: "adm", Role: RoleAdmin}, {Token: "cli", Role: RoleClient, Pools: []string{"p"}}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// allocationRequest is one request to the allocation route, or near it.
type allocationRequest struct {
	name   string
	method string // POST if empty
	target string // /v1/pools/p/numbers if empty
	auth   string // the Authorization header, if any
	body   string
	keys   []string // the Idempotency-Key header's values
	header http.Header
	status int // the answer the contract gives
}

func (tc allocationRequest) request(chunked bool) *http.Request {
	method, target := tc.method, tc.target
	if method == "" {
		method = http.MethodPost
	}
	if target == "" {
		target = "/v1/pools/p/numbers"
	}
	req := httptest.NewRequest(method, target, strings.NewReader(tc.body))
	switch {
	case chunked: // as a body of unknown length arrives
		req.ContentLength = -1
		req.Body = io.NopCloser(strings.NewReader(tc.body))
	case tc.body == "":
		req.Body = http.NoBody
	}
	if tc.auth != "" {
		req.Header.Set("Authorization", tc.auth)
	}
	if tc.keys != nil {
		req.Header["Idempotency-Key"] = tc.keys
	}
	for k, v := range tc.header {
		req.Header[k] = v
	}
	return req
}

// allocationRequests are the route's usual requests and its odd ones.
func allocationRequests() []allocationRequest {
	const cli, adm = "Bearer cli", "Bearer adm"
	long := strings.Repeat("k", maxIdempotencyKey+1)
	big := `{"count":1}` + strings.Repeat(" ", MaxBodyBytes)
	return []allocationRequest{
		{name: "no body", auth: cli, status: 200},
		{name: "count", auth: cli, body: `{"count":3}`, status: 200},
		{name: "count with spaces", auth: adm, body: " { \"count\" : 2 }\n", status: 200},
		{name: "white space only", auth: cli, body: "  ", status: 200},
		{name: "empty object", auth: cli, body: `{}`, status: 200},
		{name: "count 1000", auth: cli, body: `{"count":1000}`, status: 200},
		{name: "count 0", auth: cli, body: `{"count":0}`, status: 400},
		{name: "count -1", auth: cli, body: `{"count":-1}`, status: 400},
		{name: "count 1001", auth: cli, body: `{"count":1001}`, status: 400},
		{name: "count beyond int64", auth: cli, body: `{"count":99999999999999999999}`, status: 400},
		{name: "count as a string", auth: cli, body: `{"count":"5"}`, status: 400},
		{name: "count null", auth: cli, body: `{"count":null}`, status: 400},
		{name: "fractional count", auth: cli, body: `{"count":1.5}`, status: 400},
		{name: "count in exponent form", auth: cli, body: `{"count":1e2}`, status: 400},
		{name: "count twice", auth: cli, body: `{"count":1,"count":2}`, status: 400},
		{name: "Count", auth: cli, body: `{"Count":1}`, status: 400},
		{name: "unknown field", auth: cli, body: `{"count":1,"extra":true}`, status: 400},
		{name: "malformed", auth: cli, body: `{"count":`, status: 400},
		{name: "trailing garbage", auth: cli, body: `{"count":1} x`, status: 400},
		{name: "two values", auth: cli, body: `{"count":1} {"count":2}`, status: 400},
		{name: "array", auth: cli, body: `[1]`, status: 400},
		{name: "null", auth: cli, body: `null`, status: 400},
		{name: "not UTF-8", auth: cli, body: "{\"count\":1,\"\xff\":1}", status: 400},
		{name: "body of 300 bytes", auth: cli, body: `{"count":2}` + strings.Repeat("\n", 289), status: 200},
		{name: "body of 64 KiB", auth: cli, body: big[:MaxBodyBytes], status: 200},
		{name: "body of 64 KiB and a byte", auth: cli, body: big[:MaxBodyBytes+1], status: 413},
		{name: "body too large", auth: cli, body: big, status: 413},
		{name: "body too large, no token", body: big, status: 401},
		{name: "wrong content type", auth: cli, body: `{"count":2}`, header: http.Header{"Content-Type": {"text/plain"}}, status: 200},
		{name: "form body", auth: cli, body: `count=2`, header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, status: 400},
		{name: "idempotency key", auth: cli, body: `{"count":2}`, keys: []string{"k-1"}, status: 200},
		{name: "idempotency key replayed", auth: cli, keys: []string{"again"}, status: 200},
		{name: "two idempotency keys", auth: cli, keys: []string{"a", "b"}, status: 400},
		{name: "two equal idempotency keys", auth: cli, keys: []string{"a", "a"}, status: 400},
		{name: "empty idempotency key", auth: cli, keys: []string{""}, status: 400},
		{name: "idempotency key too long", auth: cli, keys: []string{long}, status: 400},
		{name: "idempotency key not printable", auth: cli, keys: []string{"k\x7f"}, status: 400},
		{name: "idempotency key with a comma", auth: cli, keys: []string{"a,b"}, status: 200},
		{name: "no token", body: `{"count":1}`, status: 401},
		{name: "unknown token", auth: "Bearer nope", body: `{"count":1}`, status: 401},
		{name: "basic scheme", auth: "Basic Y2xpOg==", status: 401},
		{name: "lower-case scheme", auth: "bearer cli", status: 200},
		{name: "token with spaces", auth: "Bearer  cli ", status: 200},
		{name: "scheme alone", auth: "Bearer", status: 401},
		{name: "another pool's client", target: "/v1/pools/q/numbers", auth: cli, body: `{"count":1}`, status: 403},
		{name: "bad body before forbidden", target: "/v1/pools/q/numbers", auth: cli, body: `{"count":0}`, status: 400},
		{name: "escaped pool", target: "/v1/pools/%70/numbers", auth: cli, status: 200},
		{name: "escaped slash in pool", target: "/v1/pools/p%2Fq/numbers", auth: adm, status: 400},
		{name: "escaped space in pool", target: "/v1/pools/%20/numbers", auth: adm, status: 400},
		{name: "escaped dots", target: "/v1/pools/%2e%2e/numbers", auth: adm, status: 400},
		{name: "empty pool", target: "/v1/pools//numbers", auth: adm, status: 400},
		{name: "bad pool id", target: "/v1/pools/P!/numbers", auth: adm, status: 400},
		{name: "pool id too long", target: "/v1/pools/" + strings.Repeat("p", 200) + "/numbers", auth: adm, status: 400},
		{name: "query string", target: "/v1/pools/p/numbers?count=5", auth: cli, status: 200},
		{name: "trailing slash", target: "/v1/pools/p/numbers/", auth: cli, status: 404},
		{name: "double slash", target: "/v1//pools/p/numbers", auth: cli, status: 404},
		{name: "upper-case path", target: "/V1/pools/p/numbers", auth: cli, status: 404},
		{name: "GET", method: http.MethodGet, auth: cli, status: 405},
		{name: "HEAD", method: http.MethodHead, auth: cli, status: 405},
		{name: "PUT", method: http.MethodPut, auth: cli, body: `{"count":1}`, status: 405},
		{name: "DELETE", method: http.MethodDelete, auth: cli, status: 405},
		{name: "OPTIONS", method: http.MethodOptions, auth: cli, status: 405},
		{name: "GET without a token", method: http.MethodGet, status: 401},
		{name: "GET with a body too large", method: http.MethodGet, auth: cli, body: big, status: 413},
		{name: "exhausted", target: "/v1/pools/empty/numbers", auth: adm, body: `{"count":1}`, status: 503},
		{name: "pool not found", target: "/v1/pools/gone/numbers", auth: adm, status: 404},
		{name: "redis down", target: "/v1/pools/down/numbers", auth: adm, status: 503},
		{name: "engine panics", target: "/v1/pools/boom/numbers", auth: adm, status: 500},
	}
}

// TestAllocationRouteAnswersAsTheGeneratedHandler sends each request to two
// servers alike but for the allocation route's handler: numberd's, and the
// generated strict handler, which binds the path, the header and the body as
// api/openapi.yaml says. Both must answer byte for byte the same, as the
// contract says, and count the answer alike. Each request is sent with a body
// of known length, then again with one of unknown length.
func TestAllocationRouteAnswersAsTheGeneratedHandler(t *testing.T) {
	s, generated := newAllocOnlyServer(t), newAllocOnlyServer(t)
	generated.handler = generated.router(nil)
	for _, tc := range allocationRequests() {
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/chunked=%v", tc.name, chunked), func(t *testing.T) {
				var answers [2]*httptest.ResponseRecorder
				var counted [2]map[string]float64
				for i, srv := range []*Server{s, generated} {
					before := requestsCounted(srv)
					w := httptest.NewRecorder()
					srv.ServeHTTP(w, tc.request(chunked))
					counted[i] = countedSince(before, requestsCounted(srv))
					answers[i] = w
				}
				got, want := answers[0], answers[1]
				if got.Code != tc.status {
					t.Errorf("answered %d, want %d: %s", got.Code, tc.status, got.Body)
				}
				if got.Code != want.Code || got.Body.String() != want.Body.String() {
					t.Errorf("answered %d %s\ngenerated handler answered %d %s", got.Code, got.Body, want.Code, want.Body)
				}
				if a, b := fmt.Sprint(got.Header()), fmt.Sprint(want.Header()); a != b {
					t.Errorf("headers %s\ngenerated handler's %s", a, b)
				}
				if a, b := fmt.Sprint(counted[0]), fmt.Sprint(counted[1]); a != b {
					t.Errorf("counted %s, generated handler's %s", a, b)
				}
				// Every answer after authentication and routing, a panic's
				// included, counts under the route.
				if routed := tc.method == "" && !slices.Contains([]int{401, 404}, got.Code); routed {
					if key := allocationRoute + " " + statusText(got.Code); counted[0][key] != 1 {
						t.Errorf("answered %d, counted %v", got.Code, counted[0])
					}
				}
			})
		}
	}
}

// requestsCounted returns the HTTP answers counted, by "route status".
func requestsCounted(s *Server) map[string]float64 {
	ch := make(chan prometheus.Metric, 64)
	s.metrics.HTTPRequests.Collect(ch)
	close(ch)
	counted := map[string]float64{}
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			panic(err)
		}
		labels := map[string]string{}
		for _, l := range d.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		counted[labels["route"]+" "+labels["code"]] = d.GetCounter().GetValue()
	}
	return counted
}

// countedSince returns what after counted beyond before.
func countedSince(before, after map[string]float64) map[string]float64 {
	d := map[string]float64{}
	for k, v := range after {
		if v != before[k] {
			d[k] = v - before[k]
		}
	}
	return d
}
