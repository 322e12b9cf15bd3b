package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/numberd/numberd/test/harness"
)

func secret(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// endpoint is one route of the API on one pool.
type endpoint struct {
	name, method, path string
	body               any
	admin              bool // admin only
}

// poolEndpoints lists every /v1 route on pool, segID being one of its segments.
func poolEndpoints(pool, segID string) []endpoint {
	if segID == "" {
		segID = "1"
	}
	p := "/v1/pools/" + pool
	return []endpoint{
		{"get pool", "GET", p, nil, false},
		{"allocate", "POST", p + "/numbers", map[string]any{"count": 1}, false},
		{"put pool", "PUT", p, map[string]any{"refill_threshold": 50}, true},
		{"load segment", "POST", p + "/segments", map[string]any{"start": n20(9001), "end": n20(9010)}, true},
		{"list segments", "GET", p + "/segments", nil, true},
		{"retire", "POST", p + "/segments/" + segID + "/retire", nil, true},
		{"gaps", "GET", p + "/gaps", nil, true},
		{"refill", "POST", p + "/refill", nil, true},
	}
}

// TestAuth checks the token and role matrix, the order of the checks, and that no
// answer and no log line carries a token.
func TestAuth(t *testing.T) {
	t.Parallel()
	var (
		admin    = secret("adm-")
		clientA  = secret("cli-a-")
		clientB  = secret("cli-b-")
		unknown  = secret("nobody-")
		upstream = secret("up-")
	)
	const (
		pa    = "auth-a"
		pb    = "auth-b"
		pu    = "auth-upstream"
		ghost = "auth-ghost" // listed for clientA, never created
	)
	s := startServer(t, Options{Record: true, Config: &harness.FileConfig{
		Tokens: []harness.TokenConfig{
			{Token: admin, Role: "admin"},
			{Token: clientA, Role: "client", Pools: []string{pa, ghost}},
			{Token: clientB, Role: "client", Pools: []string{pb}},
		},
		// Nothing listens on the discard port: refills fail, which is fine here.
		Upstreams: map[string]harness.UpstreamConfig{"sim": {URL: "http://127.0.0.1:9", Token: upstream, Timeout: time.Second}},
	}})

	segIDs := map[string]string{}
	for _, pool := range []string{pa, pb} {
		s.createPool(t, admin, pool, 20)
		segIDs[pool] = str(s.loadSegment(t, admin, pool, n20(1), n20(1000)), "id")
	}
	r := s.do(t, "PUT", "/v1/pools/"+pu, admin, map[string]any{"digits": 20, "upstream": "sim", "refill_quantity": 100})
	wantStatus(t, r, http.StatusCreated)
	if got := r.Str("upstream"); got != "sim" {
		t.Errorf("%s: upstream %q, want sim", r, got)
	}

	t.Run("no or unknown token", func(t *testing.T) {
		auths := []struct{ name, header string }{
			{"no Authorization", ""},
			{"unknown token", "Bearer " + unknown},
			{"empty bearer token", "Bearer "},
			{"Basic scheme", "Basic " + admin},
			{"token without scheme", admin},
			{"token with a suffix", "Bearer " + admin + "x"},
			{"token prefix", "Bearer " + admin[:len(admin)-1]},
		}
		eps := append(poolEndpoints(pa, segIDs[pa]), endpoint{"list pools", "GET", "/v1/pools", nil, false},
			endpoint{"create pool", "PUT", "/v1/pools/auth-new", map[string]any{"digits": 20}, true})
		for _, a := range auths {
			for _, ep := range eps {
				q := Req{Method: ep.method, Path: ep.path, Body: ep.body}
				if a.header != "" {
					q.Header = map[string]string{"Authorization": a.header}
				}
				r := s.Do(t, q)
				if msg := checkProblem(r, http.StatusUnauthorized, "unauthorized"); msg != "" {
					t.Errorf("%s, %s: %s:\n%s", a.name, ep.name, r, msg)
				}
				if h := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
					t.Errorf("%s, %s: WWW-Authenticate %q, want it to start with Bearer", a.name, ep.name, h)
				}
			}
		}
		s.wantCounts(t, admin, pa, "1000", "0")
	})

	t.Run("client on its own pool", func(t *testing.T) {
		for _, ep := range poolEndpoints(pa, segIDs[pa]) {
			r := s.Do(t, Req{Method: ep.method, Path: ep.path, Token: clientA, Body: ep.body})
			if ep.admin {
				expectProblem(t, r, http.StatusForbidden, "forbidden")
			} else if r.Status != http.StatusOK {
				t.Errorf("%s: %s, want 200", ep.name, r)
			}
		}
		// Nothing an admin endpoint would have done happened.
		if segs := s.segments(t, admin, pa); len(segs) != 1 || str(segs[0], "state") != "active" {
			t.Errorf("after the client's refused calls: segments %v, want the one active segment", segs)
		}
		expectProblem(t, s.do(t, "PUT", "/v1/pools/auth-new", clientA, map[string]any{"digits": 20}), http.StatusForbidden, "forbidden")
		wantProblem(t, s.do(t, "GET", "/v1/pools/auth-new", admin, nil), http.StatusNotFound, "pool_not_found")
	})

	t.Run("client on another pool", func(t *testing.T) {
		for _, c := range []struct {
			token, pool string
		}{{clientA, pb}, {clientB, pa}, {clientB, pu}} {
			for _, ep := range poolEndpoints(c.pool, segIDs[c.pool]) {
				r := s.Do(t, Req{Method: ep.method, Path: ep.path, Token: c.token, Body: ep.body})
				if msg := checkProblem(r, http.StatusForbidden, "forbidden"); msg != "" {
					t.Errorf("%s on %s: %s:\n%s", ep.name, c.pool, r, msg)
				}
			}
		}
		// Authorisation comes before existence: a pool the token does not list is
		// forbidden whether or not it exists; one it lists but that does not exist is
		// not found.
		expectProblem(t, s.do(t, "GET", "/v1/pools/auth-nonexistent", clientA, nil), http.StatusForbidden, "forbidden")
		expectProblem(t, s.do(t, "POST", "/v1/pools/auth-nonexistent/numbers", clientA, nil), http.StatusForbidden, "forbidden")
		expectProblem(t, s.do(t, "GET", "/v1/pools/"+ghost, clientA, nil), http.StatusNotFound, "pool_not_found")
		expectProblem(t, s.do(t, "POST", "/v1/pools/"+ghost+"/numbers", clientA, nil), http.StatusNotFound, "pool_not_found")
		s.wantCounts(t, admin, pb, "1000", "0")
	})

	t.Run("pool list", func(t *testing.T) {
		for _, c := range []struct {
			name, token string
			want        []string
		}{
			{"client A", clientA, []string{pa}},
			{"client B", clientB, []string{pb}},
			{"admin", admin, []string{pa, pb, pu}},
		} {
			r := s.do(t, "GET", "/v1/pools", c.token, nil)
			wantStatus(t, r, http.StatusOK)
			pools, ok := r.Objs("pools")
			if !ok {
				t.Fatalf("%s: %s: no pools list", c.name, r)
			}
			var got []string
			for _, p := range pools {
				got = append(got, str(p, "pool"))
			}
			slices.Sort(got)
			if !slices.Equal(got, c.want) {
				t.Errorf("%s: GET /v1/pools lists %v, want %v", c.name, got, c.want)
			}
		}
	})

	t.Run("admin", func(t *testing.T) {
		for _, ep := range poolEndpoints(pa, segIDs[pa]) {
			r := s.Do(t, Req{Method: ep.method, Path: ep.path, Token: admin, Body: ep.body})
			want := map[string]int{"load segment": http.StatusCreated}[ep.name]
			if ep.name == "refill" { // pa has no upstream
				expectProblem(t, r, http.StatusBadRequest, "invalid_argument")
				continue
			}
			if want == 0 {
				want = http.StatusOK
			}
			if r.Status != want {
				t.Errorf("%s: %s, want %d", ep.name, r, want)
			}
		}
		r := s.do(t, "POST", "/v1/pools/"+pu+"/refill", admin, nil)
		if r.Status != http.StatusAccepted {
			t.Errorf("refill of a pool with an upstream: %s, want 202", r)
		} else if st := r.Str("state"); st != "idle" && st != "requesting" && st != "failed" {
			t.Errorf("refill: %s, want a refill object with state idle, requesting or failed", r)
		}
	})

	t.Run("order of the checks", func(t *testing.T) {
		big := `{"count":1}` + strings.Repeat(" ", 65<<10)
		rows := []struct {
			name, method, path, token string
			body                      any
			status                    int
			code                      string
		}{
			{"no token, malformed body", "POST", "/v1/pools/" + pa + "/numbers", "", `{"count":`, 401, "unauthorized"},
			{"no token, bad pool id", "GET", "/v1/pools/-bad", "", nil, 401, "unauthorized"},
			{"no token, body too large", "POST", "/v1/pools/" + pa + "/numbers", "", big, 401, "unauthorized"},
			{"unknown token, count 0", "POST", "/v1/pools/" + pa + "/numbers", unknown, `{"count":0}`, 401, "unauthorized"},
			{"client, malformed body, foreign pool", "POST", "/v1/pools/" + pb + "/numbers", clientA, `{"count":`, 400, "invalid_argument"},
			{"client, count 0, foreign pool", "POST", "/v1/pools/" + pb + "/numbers", clientA, `{"count":0}`, 400, "invalid_argument"},
			{"client, unknown field, foreign pool", "POST", "/v1/pools/" + pb + "/numbers", clientA, `{"n":1}`, 400, "invalid_argument"},
			{"client, body too large, foreign pool", "POST", "/v1/pools/" + pb + "/numbers", clientA, big, 413, "body_too_large"},
			{"client, bad pool id", "POST", "/v1/pools/-bad/numbers", clientA, nil, 400, "invalid_argument"},
			{"client, malformed body, admin endpoint", "PUT", "/v1/pools/" + pa, clientA, `{"digits":`, 400, "invalid_argument"},
			{"client, good body, foreign pool", "POST", "/v1/pools/" + pb + "/numbers", clientA, `{"count":1}`, 403, "forbidden"},
			{"admin, malformed body, unknown pool", "POST", "/v1/pools/auth-nonexistent/numbers", admin, `{"count":`, 400, "invalid_argument"},
			{"admin, count 1001, unknown pool", "POST", "/v1/pools/auth-nonexistent/numbers", admin, `{"count":1001}`, 400, "invalid_argument"},
			{"admin, bad segment, unknown pool", "POST", "/v1/pools/auth-nonexistent/segments", admin, map[string]any{"start": "x", "end": "y"}, 400, "invalid_argument"},
		}
		for _, row := range rows {
			r := s.do(t, row.method, row.path, row.token, row.body)
			if msg := checkProblem(r, row.status, row.code); msg != "" {
				t.Errorf("%s: %s:\n%s", row.name, r, msg)
			}
		}
	})

	t.Run("operations need no token", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/readyz", "/metrics", "/openapi.yaml"} {
			if r := s.do(t, "GET", path, "", nil); r.Status != http.StatusOK {
				t.Errorf("%s", r)
			}
		}
	})

	// Finally: no token in any answer or log line. Stop first so every log line is out.
	if code := s.Stop(); code != 0 {
		t.Errorf("exit status after SIGTERM: %d, want 0", code)
	}
	secrets := []string{admin, clientA, clientB, unknown, upstream}
	answers := s.Answers()
	if len(answers) < 100 {
		t.Errorf("only %d answers recorded, want every one of the test's", len(answers))
	}
	for _, leak := range findSecrets(answers, secrets...) {
		t.Errorf("an answer carries a token: %s", leak)
	}
	for _, leak := range findSecrets(s.Logs(), secrets...) {
		t.Errorf("a log line carries a token: %s", leak)
	}
}
