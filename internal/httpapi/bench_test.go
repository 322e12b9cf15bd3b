package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/httpapi"
	"github.com/numberd/numberd/internal/segment"
)

// BenchmarkAllocateHandler measures the handler chain of the allocation route —
// routing, authentication, body, decoding, the answer — around an engine that
// costs nothing, without a network.
func BenchmarkAllocateHandler(b *testing.B) {
	r, err := segment.ParseRange("24442000000000000001", "24442000000000999999", 20)
	if err != nil {
		b.Fatal(err)
	}
	eng := &fakeEngine{tb: b, allocate: func(req numberd.Request) (numberd.Allocation, error) {
		span := r
		span.Hi = span.Lo + int64(req.Count) - 1
		return numberd.Allocation{Pool: req.Pool, Spans: []segment.Range{span}}, nil
	}}
	for _, tc := range []struct{ name, body, token string }{
		{"no body, open", "", ""},
		{"count 1, token", `{"count":1}`, "cli"},
		{"count 1000, token", `{"count":1000}`, "cli"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := httpapi.New(httpapi.Config{Engine: eng, Logger: discard(), Tokens: tokensFor(tc.token)})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := httptest.NewRequest(http.MethodPost, "/v1/pools/p/numbers", strings.NewReader(tc.body))
					if tc.token != "" {
						req.Header.Set("Authorization", "Bearer "+tc.token)
					}
					w := httptest.NewRecorder()
					s.ServeHTTP(w, req)
					if w.Code != http.StatusOK {
						b.Fatalf("answered %d: %s", w.Code, w.Body)
					}
				}
			})
		})
	}
}

func tokensFor(token string) []httpapi.Token {
	if token == "" {
		return nil
	}
	return []httpapi.Token{{Token: token, Role: httpapi.RoleClient, Pools: []string{"p"}}}
}
