package httpapi

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/segment"
	"github.com/numberd/numberd/internal/store"
)

// allocOnly is an engine that only allocates: from a fixed range, or with the
// error its pool's name asks for.
type allocOnly struct {
	Engine // nil: any other call panics
	next   segment.Range
}

func (e *allocOnly) Allocate(_ context.Context, req alloc.Request) (alloc.Allocation, error) {
	switch req.Pool {
	case "empty":
		return alloc.Allocation{}, fmt.Errorf("%w: 0 left", alloc.ErrExhausted)
	case "gone":
		return alloc.Allocation{}, fmt.Errorf("%w: %s", store.ErrPoolNotFound, req.Pool)
	case "down":
		return alloc.Allocation{}, fmt.Errorf("%w: dial tcp 10.0.0.1:6379: refused", alloc.ErrUnavailable)
	case "boom":
		panic("engine bug")
	}
	span := e.next
	span.Hi = span.Lo + int64(req.Count) - 1
	return alloc.Allocation{Pool: req.Pool, Spans: []segment.Range{span}, Replayed: req.Idempotency != nil && req.Idempotency.Key == "again"}, nil
}

// TestHotPathAnswersAsTheGeneralWay sends each allocation request twice: as the
// hot path serves it (a body of known length) and with a body of unknown length,
// which goes through the router, the middlewares and the generated server. Both
// must answer byte for byte the same.
func TestHotPathAnswersAsTheGeneralWay(t *testing.T) {
	r, err := segment.ParseRange("24442000000000000001", "24442000000000999999", 20)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{
		Engine: &allocOnly{next: r}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Tokens: []Token{{Token: "adm", Role: RoleAdmin}, {Token: "cli", Role: RoleClient, Pools: []string{"p"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("k", maxIdempotencyKey+1)
	cases := []struct {
		name, pool, token, body, key string
	}{
		{"no body", "p", "cli", "", ""},
		{"count", "p", "cli", `{"count":3}`, ""},
		{"count with spaces", "p", "adm", " { \"count\" : 2 }\n", ""},
		{"white space only", "p", "cli", "  ", ""},
		{"empty object", "p", "cli", `{}`, ""},
		{"count 0", "p", "cli", `{"count":0}`, ""},
		{"count 1001", "p", "cli", `{"count":1001}`, ""},
		{"count beyond int64", "p", "cli", `{"count":99999999999999999999}`, ""},
		{"count as a string", "p", "cli", `{"count":"5"}`, ""},
		{"fractional count", "p", "cli", `{"count":1.5}`, ""},
		{"unknown field", "p", "cli", `{"count":1,"extra":true}`, ""},
		{"malformed", "p", "cli", `{"count":`, ""},
		{"trailing garbage", "p", "cli", `{"count":1} x`, ""},
		{"array", "p", "cli", `[1]`, ""},
		{"null", "p", "cli", `null`, ""},
		{"idempotency key", "p", "cli", `{"count":2}`, "k-1"},
		{"idempotency key replayed", "p", "cli", ``, "again"},
		{"idempotency key too long", "p", "cli", ``, long},
		{"idempotency key not printable", "p", "cli", ``, "k\x7f"},
		{"no token", "p", "", `{"count":1}`, ""},
		{"unknown token", "p", "nope", `{"count":1}`, ""},
		{"another pool's client", "q", "cli", `{"count":1}`, ""},
		{"exhausted", "empty", "adm", `{"count":1}`, ""},
		{"pool not found", "gone", "adm", ``, ""},
		{"redis down", "down", "adm", ``, ""},
		{"engine panics", "boom", "adm", ``, ""},
	}
	const route = "/v1/pools/{pool}/numbers"
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var answers [2]*httptest.ResponseRecorder
			for i, hot := range []bool{true, false} {
				req := httptest.NewRequest(http.MethodPost, "/v1/pools/"+tc.pool+"/numbers", strings.NewReader(tc.body))
				if tc.body == "" {
					req.Body, req.ContentLength = http.NoBody, 0
				}
				if !hot {
					req.ContentLength = -1 // as a chunked body arrives
					if tc.body == "" {
						req.Body = io.NopCloser(strings.NewReader(""))
					}
				}
				if tc.token != "" {
					req.Header.Set("Authorization", "Bearer "+tc.token)
				}
				if tc.key != "" {
					req.Header["Idempotency-Key"] = []string{tc.key}
				}
				if _, ok := hotAllocation(req); ok != hot {
					t.Fatalf("hotAllocation took it: %v, want %v", ok, hot)
				}
				before := requestsCounted(s)
				w := httptest.NewRecorder()
				s.ServeHTTP(w, req)
				after := requestsCounted(s)
				// The general way counts a body it refuses before routing as
				// unmatched, and a panic not at all; the hot path counts each
				// answer under its route.
				if key := route + " " + statusText(w.Code); hot && after[key] != before[key]+1 {
					t.Errorf("answered %d, counted %v, then %v", w.Code, before, after)
				}
				answers[i] = w
			}
			hot, general := answers[0], answers[1]
			if hot.Code != general.Code || hot.Body.String() != general.Body.String() {
				t.Errorf("hot path answered %d %s\ngeneral way answered %d %s", hot.Code, hot.Body, general.Code, general.Body)
			}
			for _, h := range []string{"Content-Type", "Cache-Control", "WWW-Authenticate", "Retry-After", "Idempotent-Replayed"} {
				if a, b := hot.Header().Values(h), general.Header().Values(h); fmt.Sprint(a) != fmt.Sprint(b) {
					t.Errorf("%s: hot path %q, general way %q", h, a, b)
				}
			}
			t.Logf("%d %s", hot.Code, strings.TrimSpace(hot.Body.String()))
		})
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
