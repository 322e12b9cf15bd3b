package refill_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/numberd/numberd/internal/refill"
	"github.com/numberd/numberd/internal/testenv"
	"github.com/numberd/numberd/internal/upstreamsim"
)

var _ refill.Upstream = (*refill.HTTPUpstream)(nil)

// MustHTTPUpstream returns the adapter for baseURL with token and the default timeout.
func MustHTTPUpstream(tb testing.TB, baseURL, token string) *refill.HTTPUpstream {
	tb.Helper()
	up, err := refill.NewHTTPUpstream(baseURL, token, 0)
	if err != nil {
		tb.Fatalf("NewHTTPUpstream(%q): %v", baseURL, err)
	}
	return up
}

func wantSimStats(tb testing.TB, sim *upstreamsim.Server, want upstreamsim.Stats) {
	tb.Helper()
	if got := sim.Stats(); got != want {
		tb.Errorf("simulator's Stats() = %+v, want %+v", got, want)
	}
}

// fakeUpstream answers every call with status and body, recording the requests.
type fakeUpstream struct {
	mu       sync.Mutex
	requests []recordedRequest
	respond  func(w http.ResponseWriter, r *http.Request, body []byte)
}

// first returns the first request recorded.
func (f *fakeUpstream) first(tb testing.TB) recordedRequest {
	tb.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		tb.Fatal("the fake upstream got no request")
	}
	return f.requests[0]
}

type recordedRequest struct {
	Method, Path, Authorization, ContentType string
	Body                                     []byte
}

func startFakeUpstream(tb testing.TB, respond func(w http.ResponseWriter, r *http.Request, body []byte)) (*fakeUpstream, *httptest.Server) {
	tb.Helper()
	f := &fakeUpstream{respond: respond}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.requests = append(f.requests, recordedRequest{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), body})
		f.mu.Unlock()
		f.respond(w, r, body)
	}))
	tb.Cleanup(srv.Close)
	return f, srv
}

// fixed answers status with body.
func answerWith(status int, body string) func(http.ResponseWriter, *http.Request, []byte) {
	return func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// wantRetryable fails tb unless err is an error that is not final.
func wantRetryable(tb testing.TB, err error) {
	tb.Helper()
	if err == nil || errors.Is(err, refill.ErrRefused) {
		tb.Errorf("Apply: %v, want a retryable error (not ErrRefused)", err)
	}
}

func TestNewHTTPUpstreamRejectsBadArguments(t *testing.T) {
	const token = "tok-secret"
	tests := []struct {
		name, url, token string
		timeout          time.Duration
	}{
		{"empty url", "", token, 0},
		{"no scheme", "127.0.0.1:9090", token, 0},
		{"other scheme", "ftp://127.0.0.1:9090", token, 0},
		{"no host", "http:///segments", token, 0},
		{"not a url", "http://[::1", token, 0},
		{"query", "http://127.0.0.1:9090/?a=1", token, 0},
		{"fragment", "http://127.0.0.1:9090/#x", token, 0},
		{"negative timeout", "http://127.0.0.1:9090", token, -time.Second},
		{"token with a space", "http://127.0.0.1:9090", "tok secret", 0},
		{"token with a newline", "http://127.0.0.1:9090", "tok\nsecret", 0},
		{"token not ASCII", "http://127.0.0.1:9090", "tök-secret", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up, err := refill.NewHTTPUpstream(tt.url, tt.token, tt.timeout)
			if err == nil {
				t.Fatalf("NewHTTPUpstream(%q, …, %v) = %v, nil; want an error", tt.url, tt.timeout, up)
			}
			if strings.Contains(err.Error(), tt.token) {
				t.Errorf("the error shows the token: %v", err)
			}
		})
	}
	for _, ok := range []string{"http://127.0.0.1:9090", "https://leqi.example/api/v1/", "http://localhost"} {
		if _, err := refill.NewHTTPUpstream(ok, "", time.Second); err != nil {
			t.Errorf("NewHTTPUpstream(%q): %v", ok, err)
		}
	}
}

func TestHTTPUpstreamAppliesToTheSimulator(t *testing.T) {
	const token = "up-secret"
	sim, srv := testenv.UpstreamSim(t, upstreamsim.Options{Digits: 20, First: "24442000000000000001", Token: token})
	up := MustHTTPUpstream(t, srv.URL, token)
	ctx := context.Background()
	tests := []struct {
		ywlsh    string
		quantity int64
		want     refill.Grant
	}{
		{"a", 1000, refill.Grant{Ywlsh: "a", Start: "24442000000000000001", End: "24442000000000001000"}},
		{"b", 50, refill.Grant{Ywlsh: "b", Start: "24442000000000001001", End: "24442000000000001050"}},
		{"a", 1000, refill.Grant{Ywlsh: "a", Start: "24442000000000000001", End: "24442000000000001000"}},
	}
	for _, tt := range tests {
		got, err := up.Apply(ctx, "acme-vat", tt.quantity, tt.ywlsh)
		if err != nil || got != tt.want {
			t.Errorf("Apply(%q, %d) = %+v, %v; want %+v", tt.ywlsh, tt.quantity, got, err, tt.want)
		}
	}
	wantSimStats(t, sim, upstreamsim.Stats{Applies: 3, Granted: 2, Numbers: 1050})
}

func TestHTTPUpstreamSpeaksTheProtocol(t *testing.T) {
	tests := []struct {
		name, base, token, path, auth string
	}{
		{"root", "", "tok", "/segments", "Bearer tok"},
		{"path", "/leqi", "tok", "/leqi/segments", "Bearer tok"},
		{"path with a slash", "/leqi/", "tok", "/leqi/segments", "Bearer tok"},
		{"no token", "", "", "/segments", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := startFakeUpstream(t, answerWith(http.StatusOK, `{"ywlsh":"y-1","start":"001","end":"009"}`))
			up := MustHTTPUpstream(t, srv.URL+tt.base, tt.token)
			got, err := up.Apply(context.Background(), "acme-vat", 9, "y-1")
			if want := (refill.Grant{Ywlsh: "y-1", Start: "001", End: "009"}); err != nil || got != want {
				t.Fatalf("Apply = %+v, %v; want %+v", got, err, want)
			}
			r := f.first(t)
			if r.Method != http.MethodPost || r.Path != tt.path || r.Authorization != tt.auth || r.ContentType != "application/json" {
				t.Errorf("request %s %s, Authorization %q, Content-Type %q; want POST %s, %q, application/json",
					r.Method, r.Path, r.Authorization, r.ContentType, tt.path, tt.auth)
			}
			var body map[string]any
			if err := json.Unmarshal(r.Body, &body); err != nil {
				t.Fatalf("request body %q: %v", r.Body, err)
			}
			if want := map[string]any{"pool": "acme-vat", "quantity": 9.0, "ywlsh": "y-1"}; fmt.Sprint(body) != fmt.Sprint(want) {
				t.Errorf("request body %v, want %v", body, want)
			}
		})
	}
}

func TestHTTPUpstreamReturnsTheRangeAsAnswered(t *testing.T) {
	// The adapter does not know the pool's width: validating the range is the caller's job.
	_, srv := startFakeUpstream(t, answerWith(http.StatusOK, `{"ywlsh":"y","start":"9x","end":"","more":true}`))
	got, err := MustHTTPUpstream(t, srv.URL, "").Apply(context.Background(), "p", 1, "y")
	if want := (refill.Grant{Ywlsh: "y", Start: "9x", End: ""}); err != nil || got != want {
		t.Errorf("Apply = %+v, %v; want %+v", got, err, want)
	}
}

func TestHTTPUpstreamRefusalsAreFinal(t *testing.T) {
	const token = "up-secret"
	_, srv := testenv.UpstreamSim(t, upstreamsim.Options{Digits: 20, Token: token})
	ctx := context.Background()
	if _, err := MustHTTPUpstream(t, srv.URL, token).Apply(ctx, "p", 10, "taken"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, base, token, pool, ywlsh string
		quantity                       int64
		message                        string
	}{
		{"wrong token", srv.URL, "other-secret", "p", "y", 10, "401 Unauthorized: missing or wrong bearer token"},
		{"no token", srv.URL, "", "p", "y", 10, "401 Unauthorized: missing or wrong bearer token"},
		{"ywlsh reused", srv.URL, token, "p", "taken", 11, `409 Conflict: ywlsh "taken" was used for 10 numbers of pool "p"`},
		{"quantity 0", srv.URL, token, "p", "y", 0, "400 Bad Request: bad request: quantity must be 1..1000000, got 0"},
		{"no pool", srv.URL, token, "", "y", 1, "400 Bad Request: bad request: pool is required"},
		{"wrong path", srv.URL + "/v2", token, "p", "y", 1, "404 Not Found: no such route"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := MustHTTPUpstream(t, tt.base, tt.token).Apply(ctx, tt.pool, tt.quantity, tt.ywlsh)
			if !errors.Is(err, refill.ErrRefused) {
				t.Fatalf("Apply: %v, want ErrRefused", err)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("Apply: %q, want it to hold %q", err, tt.message)
			}
			if strings.Contains(err.Error(), token) || strings.Contains(err.Error(), "other-secret") {
				t.Errorf("the error shows a token: %v", err)
			}
		})
	}
}

func TestHTTPUpstreamSimulatedFailuresAreRetryable(t *testing.T) {
	ctx := context.Background()
	t.Run("fail rate 1", func(t *testing.T) {
		sim, srv := testenv.UpstreamSim(t, upstreamsim.Options{Digits: 20, FailRate: 1})
		up := MustHTTPUpstream(t, srv.URL, "")
		_, err := up.Apply(ctx, "p", 10, "y")
		wantRetryable(t, err)
		if err == nil || !strings.Contains(err.Error(), "503 Service Unavailable: simulated failure") {
			t.Errorf("Apply: %v, want the 503 and its message", err)
		}
		wantSimStats(t, sim, upstreamsim.Stats{Applies: 1})
	})
	t.Run("lose rate 1, then a retry with the same ywlsh", func(t *testing.T) {
		sim, srv := testenv.UpstreamSim(t, upstreamsim.Options{Digits: 20, LoseRate: 1})
		up := MustHTTPUpstream(t, srv.URL, "")
		_, err := up.Apply(ctx, "p", 10, "y")
		wantRetryable(t, err)
		if err := sim.SetRates(0, 0); err != nil {
			t.Fatal(err)
		}
		got, err := up.Apply(ctx, "p", 10, "y")
		if want := (refill.Grant{Ywlsh: "y", Start: "00000000000000000001", End: "00000000000000000010"}); err != nil || got != want {
			t.Errorf("retry: Apply = %+v, %v; want %+v", got, err, want)
		}
		wantSimStats(t, sim, upstreamsim.Stats{Applies: 2, Granted: 1, Numbers: 10})
	})
}

func TestHTTPUpstreamTimeoutsAndConnectionErrorsAreRetryable(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		_, srv := testenv.UpstreamSim(t, upstreamsim.Options{Digits: 20, Latency: 2 * time.Second})
		up, err := refill.NewHTTPUpstream(srv.URL, "", 50*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		_, err = up.Apply(context.Background(), "p", 10, "y")
		wantRetryable(t, err)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Apply: %v, want context.DeadlineExceeded", err)
		}
		if took := time.Since(began); took > time.Second {
			t.Errorf("Apply took %v with a timeout of 50ms", took)
		}
	})
	t.Run("timeout while reading the answer", func(t *testing.T) {
		_, srv := startFakeUpstream(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, `{"ywlsh":"y",`)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		})
		up, err := refill.NewHTTPUpstream(srv.URL, "", 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		_, err = up.Apply(context.Background(), "p", 10, "y")
		wantRetryable(t, err)
	})
	t.Run("caller cancels", func(t *testing.T) {
		_, srv := testenv.UpstreamSim(t, upstreamsim.Options{Digits: 20, Latency: 2 * time.Second})
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(30*time.Millisecond, cancel)
		_, err := MustHTTPUpstream(t, srv.URL, "").Apply(ctx, "p", 10, "y")
		wantRetryable(t, err)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Apply: %v, want context.Canceled", err)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		_, err = MustHTTPUpstream(t, "http://"+addr, "tok-secret").Apply(context.Background(), "p", 10, "y")
		wantRetryable(t, err)
		if err != nil && strings.Contains(err.Error(), "tok-secret") {
			t.Errorf("the error shows the token: %v", err)
		}
	})
}

func TestHTTPUpstreamDistrustsUnexpectedAnswers(t *testing.T) {
	huge := `{"ywlsh":"y","start":"1","end":"2","pad":"` + strings.Repeat("x", 1<<20) + `"}`
	tests := []struct {
		name   string
		status int
		body   string
	}{
		{"other ywlsh", 200, `{"ywlsh":"z","start":"001","end":"009"}`},
		{"no ywlsh", 200, `{"start":"001","end":"009"}`},
		{"no start", 200, `{"ywlsh":"y","end":"009"}`},
		{"no end", 200, `{"ywlsh":"y","start":"001"}`},
		{"null end", 200, `{"ywlsh":"y","start":"001","end":null}`},
		{"numbers as JSON numbers", 200, `{"ywlsh":"y","start":1,"end":9}`},
		{"empty body", 200, ``},
		{"truncated", 200, `{"ywlsh":"y","start":"001","en`},
		{"HTML", 200, `<html>gateway</html>`},
		{"two objects", 200, `{"ywlsh":"y","start":"001","end":"009"}{}`},
		{"over 1 MiB", 200, huge},
		{"500", 500, `{"error":"boom"}`},
		{"502 empty", 502, ``},
		{"503", 503, `{"error":"busy"}`},
		{"redirect", 307, ``},
		{"not modified", 304, ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := startFakeUpstream(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
				if tt.status/100 == 3 {
					w.Header().Set("Location", "/elsewhere")
				}
				answerWith(tt.status, tt.body)(w, r, body)
			})
			_, err := MustHTTPUpstream(t, srv.URL, "").Apply(context.Background(), "p", 9, "y")
			wantRetryable(t, err)
		})
	}
}

func TestHTTPUpstreamQuotesTheUpstreamsMessage(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"error member", `{"error":"quota exceeded"}`, "quota exceeded"},
		{"problem+json", `{"title":"Bad","detail":"quantity too large","status":400}`, "quantity too large"},
		{"message member", `{"code":7,"message":"no such taxpayer"}`, "no such taxpayer"},
		{"text", "  no\n such\ttaxpayer \r\n", "no such taxpayer"},
		{"empty", "", "(no message)"},
		{"long", strings.Repeat("long ", 100), strings.Repeat("long ", 39) + "long…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := startFakeUpstream(t, answerWith(http.StatusUnprocessableEntity, tt.body))
			_, err := MustHTTPUpstream(t, srv.URL, "").Apply(context.Background(), "p", 9, "y")
			if !errors.Is(err, refill.ErrRefused) {
				t.Fatalf("Apply: %v, want ErrRefused", err)
			}
			if want := "422 Unprocessable Entity: " + tt.want; !strings.HasSuffix(err.Error(), want) {
				t.Errorf("Apply: %q, want it to end with %q", err, want)
			}
		})
	}
}

func TestHTTPUpstreamNeverShowsTheToken(t *testing.T) {
	const token = "s3cr3t-t0ken"
	echo := func(status int, member string) func(http.ResponseWriter, *http.Request, []byte) {
		return func(w http.ResponseWriter, r *http.Request, _ []byte) {
			b, _ := json.Marshal(map[string]string{member: "you sent " + r.Header.Get("Authorization")})
			answerWith(status, string(b))(w, r, nil)
		}
	}
	tests := []struct {
		name    string
		respond func(http.ResponseWriter, *http.Request, []byte)
		final   bool
	}{
		{"400 echoing it", echo(400, "error"), true},
		{"401 echoing it", echo(401, "detail"), true},
		{"503 echoing it", echo(503, "error"), false},
		{"200 echoing it as the ywlsh", echo(200, "ywlsh"), false},
		{"200 without a grant", echo(200, "note"), false},
		{"text echoing it", func(w http.ResponseWriter, r *http.Request, _ []byte) {
			http.Error(w, r.Header.Get("Authorization"), http.StatusForbidden)
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := startFakeUpstream(t, tt.respond)
			_, err := MustHTTPUpstream(t, srv.URL, token).Apply(context.Background(), "p", 9, "y")
			if err == nil || errors.Is(err, refill.ErrRefused) != tt.final {
				t.Fatalf("Apply: %v, want an error, final: %v", err, tt.final)
			}
			if strings.Contains(err.Error(), token) {
				t.Errorf("the error shows the token: %v", err)
			}
			if got := f.first(t).Authorization; got != "Bearer "+token {
				t.Errorf("Authorization %q, want the token sent", got)
			}
		})
	}
}

// The adapter against the simulator, as the refill worker uses them.
func ExampleHTTPUpstream() {
	sim, err := upstreamsim.New(upstreamsim.Options{Digits: 20, First: "24442000000000000001", Token: "t"})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(sim.Handler())
	defer srv.Close()

	up, err := refill.NewHTTPUpstream(srv.URL, "t", 5*time.Second)
	if err != nil {
		panic(err)
	}
	// The worker records its ywlsh before asking; asking again answers the same grant.
	for range 2 {
		g, err := up.Apply(context.Background(), "acme-vat", 1000, "acme-vat-000001")
		fmt.Println(g.Start, g.End, err)
	}
	fmt.Printf("%+v\n", sim.Stats())
	// Output:
	// 24442000000000000001 24442000000000001000 <nil>
	// 24442000000000000001 24442000000000001000 <nil>
	// {Applies:2 Granted:1 Numbers:1000}
}
