package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/httpapi"
	"github.com/numberd/numberd/internal/segment"
)

// fakeEngine answers from function fields; a nil field fails the test if called.
type fakeEngine struct {
	tb       testing.TB
	allocate func(numberd.Request) (numberd.Allocation, error)
	pool     func(string) (numberd.PoolStatus, error)
	ready    func() error
}

func (f *fakeEngine) Allocate(_ context.Context, r numberd.Request) (numberd.Allocation, error) {
	return f.allocate(r)
}

func (f *fakeEngine) Pool(_ context.Context, id string) (numberd.PoolStatus, error) {
	return f.pool(id)
}

func (f *fakeEngine) Ready(context.Context) error { return f.ready() }

func (f *fakeEngine) PutPool(context.Context, string, numberd.PoolUpdate) (numberd.PoolStatus, bool, error) {
	f.tb.Fatal("PutPool called")
	return numberd.PoolStatus{}, false, nil
}

func (f *fakeEngine) Pools(context.Context) ([]numberd.PoolStatus, error) {
	f.tb.Fatal("Pools called")
	return nil, nil
}

func (f *fakeEngine) LoadSegment(context.Context, string, numberd.NewSegment) (numberd.SegmentStatus, bool, error) {
	f.tb.Fatal("LoadSegment called")
	return numberd.SegmentStatus{}, false, nil
}

func (f *fakeEngine) Segments(context.Context, string) ([]numberd.SegmentStatus, error) {
	f.tb.Fatal("Segments called")
	return nil, nil
}

func (f *fakeEngine) RetireSegment(context.Context, string, int64) (numberd.SegmentStatus, error) {
	f.tb.Fatal("RetireSegment called")
	return numberd.SegmentStatus{}, nil
}

func (f *fakeEngine) Gaps(context.Context, string) ([]numberd.Gap, error) {
	f.tb.Fatal("Gaps called")
	return nil, nil
}

func newServer(tb testing.TB, eng *fakeEngine, tokens ...httpapi.Token) *httptest.Server {
	tb.Helper()
	s, err := httpapi.New(httpapi.Config{Engine: eng, Tokens: tokens, Logger: discard()})
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(s)
	tb.Cleanup(srv.Close)
	return srv
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type problem struct {
	Type, Title, Code, Detail string
	Status                    int
	Failing                   []string
}

func post(tb testing.TB, url, token, body string) (*http.Response, problem) {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var p problem
	_ = json.NewDecoder(resp.Body).Decode(&p)
	return resp, p
}

func TestEngineErrorsMapToProblems(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
		leak   string // must not appear in the answer
	}{
		{fmt.Errorf("%w: pool p has 3 numbers left", numberd.ErrExhausted), 503, "pool_exhausted", ""},
		{fmt.Errorf("%w: mysql: dial tcp 10.0.0.9:3306: connection refused", numberd.ErrUnavailable), 503, "unavailable", "10.0.0.9"},
		{fmt.Errorf("%w: redis: i/o timeout", numberd.ErrRedisUnavailable), 503, "unavailable", "i/o timeout"},
		{context.DeadlineExceeded, 503, "unavailable", ""},
		{fmt.Errorf("%w: no pool p", numberd.ErrPoolNotFound), 404, "pool_not_found", ""},
		{fmt.Errorf("%w: key k", numberd.ErrIdempotencyConflict), 422, "idempotency_conflict", ""},
		{fmt.Errorf("%w: bad", segment.ErrInvalid), 400, "invalid_argument", ""},
		{errors.New("something unforeseen at /secret/path"), 500, "internal", "/secret/path"},
	}
	for _, tt := range tests {
		eng := &fakeEngine{tb: t, allocate: func(numberd.Request) (numberd.Allocation, error) { return numberd.Allocation{}, tt.err }}
		srv := newServer(t, eng)
		resp, p := post(t, srv.URL+"/v1/pools/p/numbers", "", "")
		if resp.StatusCode != tt.status || p.Code != tt.code || p.Status != tt.status {
			t.Errorf("%v: answered %d %q (body status %d), want %d %q", tt.err, resp.StatusCode, p.Code, p.Status, tt.status, tt.code)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%v: Content-Type %q", tt.err, ct)
		}
		if p.Type != "https://numberd.dev/problems/"+tt.code || p.Title == "" {
			t.Errorf("%v: type %q title %q", tt.err, p.Type, p.Title)
		}
		if tt.leak != "" && strings.Contains(p.Detail+p.Title, tt.leak) {
			t.Errorf("%v: answer shows %q: %+v", tt.err, tt.leak, p)
		}
	}
}

func TestAllocationAnswer(t *testing.T) {
	r, err := segment.ParseRange("24442000000000000001", "24442000000000000100", 20)
	if err != nil {
		t.Fatal(err)
	}
	var got numberd.Request
	eng := &fakeEngine{tb: t, allocate: func(req numberd.Request) (numberd.Allocation, error) {
		got = req
		a, b := r, r
		a.Lo, a.Hi = r.Lo+98, r.Hi
		b.Prefix, b.Lo, b.Hi = "25", r.Lo, r.Lo
		return numberd.Allocation{Pool: req.Pool, Spans: []segment.Range{a, b}, Replayed: true}, nil
	}}
	srv := newServer(t, eng, httpapi.Token{Token: "cli", Role: httpapi.RoleClient, Pools: []string{"acme.vat_1"}})
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/pools/acme.vat_1/numbers", strings.NewReader(`{"count": 3}`))
	req.Header.Set("Authorization", "Bearer cli")
	req.Header.Set("Idempotency-Key", "inv 42")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Pool    string
		Numbers []string
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	want := []string{"24442000000000000099", "24442000000000000100", "25442000000000000001"}
	if resp.StatusCode != 200 || body.Pool != "acme.vat_1" || strings.Join(body.Numbers, ",") != strings.Join(want, ",") {
		t.Errorf("answer %d %+v, want %v", resp.StatusCode, body, want)
	}
	if resp.Header.Get("Idempotent-Replayed") != "true" {
		t.Error("a replay lacks Idempotent-Replayed: true")
	}
	if got.Count != 3 || got.Idempotency == nil || got.Idempotency.Key != "inv 42" || got.Idempotency.Scope == "" || strings.Contains(got.Idempotency.Scope, "cli") {
		t.Errorf("engine got %+v %+v; the scope must name the token without showing it", got, got.Idempotency)
	}
}

func TestTokens(t *testing.T) {
	eng := &fakeEngine{tb: t, allocate: func(req numberd.Request) (numberd.Allocation, error) {
		return numberd.Allocation{Pool: req.Pool}, nil
	}}
	srv := newServer(t, eng,
		httpapi.Token{Token: "adm", Role: httpapi.RoleAdmin},
		httpapi.Token{Token: "cli", Role: httpapi.RoleClient, Pools: []string{"mine"}})
	tests := []struct {
		token, pool string
		status      int
	}{
		{"", "mine", 401}, {"nope", "mine", 401}, {"cli", "mine", 200}, {"cli", "other", 403},
		{"adm", "other", 200}, {"cl", "mine", 401}, {"clix", "mine", 401},
	}
	for _, tt := range tests {
		resp, p := post(t, srv.URL+"/v1/pools/"+tt.pool+"/numbers", tt.token, "")
		if resp.StatusCode != tt.status {
			t.Errorf("token %q pool %s: %d %s, want %d", tt.token, tt.pool, resp.StatusCode, p.Code, tt.status)
		}
		if tt.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("token %q: 401 without WWW-Authenticate: Bearer", tt.token)
		}
	}
	for _, bad := range [][]httpapi.Token{
		{{Token: "", Role: httpapi.RoleAdmin}},
		{{Token: "x", Role: "root"}},
		{{Token: "x", Role: httpapi.RoleClient}},
		{{Token: "x", Role: httpapi.RoleClient, Pools: []string{"-bad"}}},
		{{Token: "x", Role: httpapi.RoleAdmin}, {Token: "x", Role: httpapi.RoleAdmin}},
	} {
		if _, err := httpapi.New(httpapi.Config{Engine: eng, Tokens: bad}); err == nil {
			t.Errorf("tokens %+v accepted", bad)
		} else if strings.Contains(err.Error(), `"x"`) {
			t.Errorf("error %q shows the token", err)
		}
	}
}

func TestReadyzNamesTheFailingStore(t *testing.T) {
	down := errors.New("dial tcp 127.0.0.1:6379: connection refused")
	ready := error(nil)
	eng := &fakeEngine{tb: t, ready: func() error { return ready }}
	srv := newServer(t, eng)
	resp, err := http.Get(srv.URL + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz = %v, %v", resp, err)
	}
	resp.Body.Close()
	ready = &numberd.DownError{Stores: []string{"redis"}, Err: down}
	resp, err = http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p problem
	_ = json.NewDecoder(resp.Body).Decode(&p)
	if resp.StatusCode != 503 || p.Code != "unavailable" || len(p.Failing) != 1 || p.Failing[0] != "redis" {
		t.Errorf("readyz with Redis down = %d %+v", resp.StatusCode, p)
	}
	if strings.Contains(p.Detail, "6379") {
		t.Errorf("readyz shows the address: %q", p.Detail)
	}
}

func TestBodyLimits(t *testing.T) {
	eng := &fakeEngine{tb: t, allocate: func(req numberd.Request) (numberd.Allocation, error) {
		return numberd.Allocation{Pool: req.Pool}, nil
	}}
	srv := newServer(t, eng)
	tests := []struct {
		body   string
		status int
		code   string
	}{
		{`{"count":1} {"count":2}`, 400, "invalid_argument"},
		{`{"count":1`, 400, "invalid_argument"},
		{`[1]`, 400, "invalid_argument"},
		{`{"count":0}`, 400, "invalid_argument"},
		{`{"count":1001}`, 400, "invalid_argument"},
		{`{"count":1}` + strings.Repeat(" ", httpapi.MaxBodyBytes), 413, "body_too_large"},
		{` {"count":5} `, 200, ""},
	}
	for _, tt := range tests {
		resp, p := post(t, srv.URL+"/v1/pools/p/numbers", "", tt.body)
		if resp.StatusCode != tt.status || p.Code != tt.code {
			t.Errorf("body %.30q: %d %q, want %d %q", tt.body, resp.StatusCode, p.Code, tt.status, tt.code)
		}
	}
}

func TestRefillQuantityBeyondASegmentIsRefused(t *testing.T) {
	srv := newServer(t, &fakeEngine{tb: t})
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/v1/pools/p", strings.NewReader(`{"digits":20,"refill_quantity":9007199254740993}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p problem
	_ = json.NewDecoder(resp.Body).Decode(&p)
	if resp.StatusCode != 400 || p.Code != "invalid_argument" {
		t.Errorf("refill_quantity above 2^53: %d %q, want 400 invalid_argument", resp.StatusCode, p.Code)
	}
}

// TestMethodNotAllowedNamesTheAllowedMethods: a 405 carries Allow with the
// methods of its path, as HTTP asks.
func TestMethodNotAllowedNamesTheAllowedMethods(t *testing.T) {
	srv := newServer(t, &fakeEngine{})
	for _, tc := range []struct{ method, path, allow string }{
		{http.MethodGet, "/v1/pools/p/numbers", "POST"},
		{http.MethodDelete, "/v1/pools/p", "GET, PUT"},
		{http.MethodPost, "/healthz", "GET"},
	} {
		req, err := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d, Allow %q; want 405, Allow %q", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Allow"), tc.allow)
		}
	}
}
