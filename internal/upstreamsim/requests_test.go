package upstreamsim_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/numberd/numberd/internal/testenv"
	"github.com/numberd/numberd/internal/upstreamsim"
)

func TestServerChecksTheToken(t *testing.T) {
	const token = "sim-secret-token"
	sim, srv := testenv.UpstreamSim(t, upstreamsim.Options{Digits: 20, Token: token})
	tests := []struct {
		name   string
		header []string
		status int
	}{
		{"no header", nil, http.StatusUnauthorized},
		{"wrong token", []string{"Authorization", "Bearer nope"}, http.StatusUnauthorized},
		{"token prefix", []string{"Authorization", "Bearer " + token[:5]}, http.StatusUnauthorized},
		{"token and more", []string{"Authorization", "Bearer " + token + "x"}, http.StatusUnauthorized},
		{"other scheme", []string{"Authorization", "Basic " + token}, http.StatusUnauthorized},
		{"bare token", []string{"Authorization", token}, http.StatusUnauthorized},
		{"right token", []string{"Authorization", "Bearer " + token}, http.StatusOK},
		{"scheme in lower case", []string{"Authorization", "bearer " + token}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := apply(t, srv, "p", 10, "job", tt.header...)
			if a.Status != tt.status {
				t.Errorf("got %s, want %d", a, tt.status)
			}
			if a.Status == http.StatusUnauthorized {
				wantError(t, a, http.StatusUnauthorized)
				if got := a.Header.Get("WWW-Authenticate"); got != "Bearer" {
					t.Errorf("WWW-Authenticate %q, want Bearer", got)
				}
			}
			if strings.Contains(a.Raw, token) {
				t.Errorf("the answer shows the token: %s", a)
			}
		})
	}
	wantStats(t, sim, upstreamsim.Stats{Applies: int64(len(tests)), Granted: 1, Numbers: 10})
}

func TestServerRejectsBadRequests(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{"empty body", ""},
		{"not JSON", "pool=p&quantity=1"},
		{"array", `[]`},
		{"two objects", `{"pool":"p","quantity":1,"ywlsh":"a"}{}`},
		{"unknown field", `{"pool":"p","quantity":1,"ywlsh":"a","extra":1}`},
		{"no pool", `{"quantity":1,"ywlsh":"a"}`},
		{"empty pool", `{"pool":"","quantity":1,"ywlsh":"a"}`},
		{"pool not a string", `{"pool":1,"quantity":1,"ywlsh":"a"}`},
		{"no quantity", `{"pool":"p","ywlsh":"a"}`},
		{"quantity 0", `{"pool":"p","quantity":0,"ywlsh":"a"}`},
		{"negative quantity", `{"pool":"p","quantity":-5,"ywlsh":"a"}`},
		{"quantity over a million", `{"pool":"p","quantity":1000001,"ywlsh":"a"}`},
		{"quantity over int64", `{"pool":"p","quantity":99999999999999999999,"ywlsh":"a"}`},
		{"fractional quantity", `{"pool":"p","quantity":1.5,"ywlsh":"a"}`},
		{"quantity as a string", `{"pool":"p","quantity":"10","ywlsh":"a"}`},
		{"no ywlsh", `{"pool":"p","quantity":1}`},
		{"empty ywlsh", `{"pool":"p","quantity":1,"ywlsh":""}`},
		{"ywlsh of 65 characters", `{"pool":"p","quantity":1,"ywlsh":"` + strings.Repeat("y", 65) + `"}`},
		{"ywlsh with a control character", `{"pool":"p","quantity":1,"ywlsh":"a\u0001b"}`},
		{"ywlsh with a tab", `{"pool":"p","quantity":1,"ywlsh":"a\tb"}`},
		{"ywlsh not ASCII", `{"pool":"p","quantity":1,"ywlsh":"业务流水号"}`},
		{"body over 64 KiB", `{"pool":"` + strings.Repeat("p", 70<<10) + `","quantity":1,"ywlsh":"a"}`},
	}
	sim, srv := testenv.UpstreamSim(t, upstreamsim.Options{Digits: 20})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, do(t, srv, http.MethodPost, "/segments", tt.body), http.StatusBadRequest)
		})
	}
	wantStats(t, sim, upstreamsim.Stats{Applies: int64(len(tests))})

	// The limits themselves are accepted.
	ywlsh := " ~" + strings.Repeat("y", 62)
	wantGrant(t, apply(t, srv, "p", upstreamsim.MaxQuantity, ywlsh), ywlsh, "00000000000000000001", strings.Repeat("0", 13)+"1000000")
}

func TestServerRoutes(t *testing.T) {
	tests := []struct {
		method, path string
		status       int
		allow        string
	}{
		{http.MethodGet, "/segments", http.StatusMethodNotAllowed, "POST"},
		{http.MethodPut, "/segments", http.StatusMethodNotAllowed, "POST"},
		{http.MethodPost, "/stats", http.StatusMethodNotAllowed, "GET, HEAD"},
		{http.MethodPost, "/", http.StatusNotFound, ""},
		{http.MethodPost, "/segments/1", http.StatusNotFound, ""},
		{http.MethodGet, "/v1/pools", http.StatusNotFound, ""},
	}
	sim, srv := testenv.UpstreamSim(t, upstreamsim.Options{Digits: 20})
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			a := do(t, srv, tt.method, tt.path, `{"pool":"p","quantity":1,"ywlsh":"a"}`)
			wantError(t, a, tt.status)
			if got := a.Header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
		})
	}
	wantStats(t, sim, upstreamsim.Stats{})
}

func TestServerStats(t *testing.T) {
	sim, srv := testenv.UpstreamSim(t, upstreamsim.Options{Digits: 20})
	wantStatsJSON := func(want string) {
		t.Helper()
		a := do(t, srv, http.MethodGet, "/stats", "")
		if got := strings.TrimSpace(a.Raw); a.Status != http.StatusOK || got != want {
			t.Errorf("GET /stats = %s, want 200 %s", a, want)
		}
	}
	wantStatsJSON(`{"applies":0,"granted":0,"numbers":0}`)
	apply(t, srv, "p", 1000, "a")
	apply(t, srv, "p", 1000, "a")
	apply(t, srv, "q", 5, "b")
	apply(t, srv, "q", 0, "c") // 400
	wantStatsJSON(`{"applies":4,"granted":2,"numbers":1005}`)
	wantStats(t, sim, upstreamsim.Stats{Applies: 4, Granted: 2, Numbers: 1005})
}

func TestServerLatency(t *testing.T) {
	const latency = 150 * time.Millisecond
	sim, srv := testenv.UpstreamSim(t, upstreamsim.Options{Digits: 20, Latency: latency})
	began := time.Now()
	wantGrant(t, apply(t, srv, "p", 10, "a"), "a", "00000000000000000001", "00000000000000000010")
	if took := time.Since(began); took < latency {
		t.Errorf("the call took %v, want at least the latency %v", took, latency)
	}

	// A caller that gives up during the wait gets nothing granted.
	ctx, cancel := context.WithTimeout(context.Background(), latency/5)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/segments",
		strings.NewReader(`{"pool":"p","quantity":10,"ywlsh":"b"}`))
	if resp, err := srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("a call with a deadline of %v answered %s", latency/5, resp.Status)
	}
	srv.Close() // waits for the handler
	wantStats(t, sim, upstreamsim.Stats{Applies: 2, Granted: 1, Numbers: 10})
}
