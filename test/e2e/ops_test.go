package e2e

import (
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/numberd/numberd/test/harness"
)

// TestOperations checks the operations endpoints of the shared server, without a
// token.
func TestOperations(t *testing.T) {
	t.Parallel()
	s := shared
	// An allocation first, so the allocation counter has a sample to show.
	pool := newPoolID("ops")
	s.createPool(t, adminToken, pool, 20)
	s.loadSegment(t, adminToken, pool, segStart, segEnd)
	s.allocate(t, adminToken, pool, 1)

	tests := []struct {
		path        string
		contentType string
		contains    []string
	}{
		{"/healthz", "text/plain", nil},
		{"/readyz", "text/plain", nil},
		{"/metrics", "text/plain", []string{"numberd_allocations_total", `pool="` + pool + `"`}},
		{"/openapi.yaml", "application/yaml", []string{"openapi:", "/v1/pools/{pool}/numbers:"}},
	}
	for _, tt := range tests {
		r := s.do(t, "GET", tt.path, "", nil)
		if r.Status != http.StatusOK {
			t.Errorf("%s, want 200", r)
			continue
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.contentType) {
			t.Errorf("GET %s: Content-Type %q, want %s", tt.path, ct, tt.contentType)
		}
		for _, want := range tt.contains {
			if !strings.Contains(string(r.Raw), want) {
				t.Errorf("GET %s: the body lacks %q", tt.path, want)
			}
		}
	}
}

// TestOpenMode: without tokens on a loopback address everything is served without
// a token; a second process on the same data directory is refused while the first
// keeps serving.
func TestOpenMode(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	pool := "open"
	wantStatus(t, s.do(t, "PUT", "/v1/pools/"+pool, "", map[string]any{"digits": 20}), http.StatusCreated)
	wantStatus(t, s.do(t, "POST", segPath(pool), "", map[string]any{"start": segStart, "end": segEnd}), http.StatusCreated)
	if got, want := s.allocate(t, "", pool, 2), numSpan(segStart, numAdd(segStart, 1)); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, path := range []string{"/v1/pools", "/v1/pools/" + pool, segPath(pool), "/v1/pools/" + pool + "/gaps"} {
		if r := s.do(t, "GET", path, "", nil); r.Status != http.StatusOK {
			t.Errorf("open mode: %s, want 200", r)
		}
	}
	wantProblem(t, s.do(t, "POST", "/v1/pools/"+pool+"/refill", "", nil), http.StatusBadRequest, "invalid_argument")
	openLine := regexp.MustCompile(`(?i)open mode|runs? open|running open|no tokens?|without (a |any )?tokens?|unauthenticated|insecure|auth\w* (is )?(disabled|off)`)
	if !slices.ContainsFunc(s.Logs(), openLine.MatchString) {
		t.Errorf("no start-up log line says the server runs open (without tokens)")
	}

	code, out := harness.RunToExit(t, nil, "serve", "--addr", "127.0.0.1:0", "--data-dir", s.DataDir())
	if code == 0 {
		t.Errorf("a second numberd on the data directory exited 0, want non-zero; output:\n%s", out)
	}
	if !regexp.MustCompile(`(?i)data[ _-]?dir|directory`).MatchString(out) {
		t.Errorf("a second numberd on the data directory: the output does not mention the data directory:\n%s", out)
	}
	if !s.Running() {
		t.Fatalf("the first numberd exited when a second one started on its data directory")
	}
	if got, want := s.allocate(t, "", pool, 1), []string{numAdd(segStart, 2)}; !slices.Equal(got, want) {
		t.Errorf("the first numberd after the refused second one: got %v, want %v", got, want)
	}
	s.wantCounts(t, "", pool, "997", "3")
}

// TestListenWithoutTokens: without tokens numberd refuses any address but loopback
// unless told --insecure; with tokens any address is fine.
func TestListenWithoutTokens(t *testing.T) {
	t.Parallel()
	refused := []struct {
		name string
		env  []string
		args []string
	}{
		{"--addr 0.0.0.0:0", nil, []string{"--addr", "0.0.0.0:0"}},
		{"NUMBERD_ADDR=0.0.0.0:0", []string{"NUMBERD_ADDR=0.0.0.0:0"}, nil},
		{"--addr :0", nil, []string{"--addr", ":0"}},
	}
	for _, tt := range refused {
		t.Run("refused/"+tt.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"serve", "--data-dir", t.TempDir()}, tt.args...)
			code, out := harness.RunToExit(t, tt.env, args...)
			if code == 0 {
				t.Errorf("exit status 0, want non-zero; output:\n%s", out)
			}
			if !regexp.MustCompile(`(?i)insecure|token`).MatchString(out) {
				t.Errorf("the output does not name the fix (--insecure or tokens):\n%s", out)
			}
		})
	}

	started := []struct {
		name string
		opts Options
	}{
		{"--insecure", Options{NodeConfig: harness.NodeConfig{Addr: "0.0.0.0:0", Args: []string{"--insecure"}}}},
		{"NUMBERD_INSECURE=1", Options{NodeConfig: harness.NodeConfig{Addr: "0.0.0.0:0", Env: []string{"NUMBERD_INSECURE=1"}}}},
		{"tokens configured", Options{NodeConfig: harness.NodeConfig{Addr: "0.0.0.0:0"},
			Config: &harness.FileConfig{Tokens: []harness.TokenConfig{{Token: secret("adm-"), Role: "admin"}}}}},
	}
	for _, tt := range started {
		t.Run("started/"+tt.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, tt.opts)
			if r := s.do(t, "GET", "/healthz", "", nil); r.Status != http.StatusOK {
				t.Errorf("%s, want 200", r)
			}
			if code := s.Stop(); code != 0 {
				t.Errorf("exit status after SIGTERM: %d, want 0", code)
			}
		})
	}
}

// TestMigrate: `numberd migrate` prepares a data directory and exits 0; a server
// then starts on it.
func TestMigrate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for i := range 2 { // twice: migrating a migrated directory changes nothing
		if code, out := harness.RunToExit(t, nil, "migrate", "--data-dir", dir); code != 0 {
			t.Fatalf("numberd migrate (run %d): exit status %d, want 0; output:\n%s", i+1, code, out)
		}
	}
	s := startServer(t, Options{NodeConfig: harness.NodeConfig{DataDir: dir}})
	wantStatus(t, s.do(t, "PUT", "/v1/pools/m", "", map[string]any{"digits": 8}), http.StatusCreated)
}
