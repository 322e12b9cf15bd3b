package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/numberd/numberd/test/harness"
)

// The shared server's tokens. Tests that need their own server and tokens make
// their own; these are only for the server every other test shares.
const (
	adminToken = "e2e-admin-tok-9d41c7a0"
	// clientOne and clientTwo are two client tokens of the same pool, idemScopePool.
	clientOne     = "e2e-client-one-5b20e8f1"
	clientTwo     = "e2e-client-two-c6f317d2"
	idemScopePool = "idem-scope"
)

var (
	// shared is the server most tests share, started by TestMain with sharedConfig.
	shared *Server
	// seq makes names unique within the run: pools.
	seq atomic.Int64
)

func sharedConfig() harness.FileConfig {
	return harness.FileConfig{Tokens: []harness.TokenConfig{
		{Token: adminToken, Role: "admin"},
		{Token: clientOne, Role: "client", Pools: []string{idemScopePool}},
		{Token: clientTwo, Role: "client", Pools: []string{idemScopePool}},
	}}
}

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

// runMain starts the shared server (building the binary), runs the tests, and
// then wants the shared server to exit 0 on SIGTERM, without a token or a data
// race in its log.
func runMain(m *testing.M) int {
	defer harness.RemoveBinary()
	dir, err := os.MkdirTemp("", "numberd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)

	conf := filepath.Join(dir, "numberd.yaml")
	if err := harness.WriteConfigFile(conf, sharedConfig()); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	proc, err := harness.Launch(harness.NodeConfig{
		DataDir: filepath.Join(dir, "shared-data"),
		Args:    []string{"--config", conf},
	}, dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: FAIL: starting the shared server: %v\n", err)
		return 1
	}
	shared = newServer(nil, proc.URL(), nil, false)
	code := m.Run()

	shared.client.Close() // idle connections would hold up a graceful shutdown
	exit, err := proc.Terminate()
	logs := proc.Logs()
	logged := false
	if err != nil || exit != 0 {
		fmt.Fprintf(os.Stderr, "e2e: FAIL: the shared server exited %d on SIGTERM (%v), want 0; its log:\n%s\n", exit, err, strings.Join(logs, "\n"))
		code, logged = 1, true
	}
	if leaks := findSecrets(logs, adminToken, clientOne, clientTwo); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: FAIL: the shared server logged a token:\n%s\n", strings.Join(leaks, "\n"))
		code = 1
	}
	if race := harness.RaceReport(logs); race != "" {
		fmt.Fprintf(os.Stderr, "e2e: FAIL: the race detector reported a data race in the shared server:\n%s\n", race)
		code = 1
	}
	if code != 0 && !logged {
		fmt.Fprintf(os.Stderr, "e2e: the shared server's last log lines:\n%s\n", strings.Join(harness.Tail(logs, 60), "\n"))
	}
	return code
}

// Options says how a test starts a server of its own: as NodeConfig says (in
// embedded mode: DataDir empty is a fresh temporary directory), with a
// configuration file, and recording the answers or not.
type Options struct {
	harness.NodeConfig
	// Config, if set, is written to a file and passed as --config; nil runs the
	// server without tokens (open mode).
	Config *harness.FileConfig
	// Record keeps every answer (headers and body) for Server.Answers.
	Record bool
}

// Server is a numberd process the tests send requests to (client_test.go): the
// shared one, or one a test started for itself with startServer, whose process the
// embedded Node controls (Stop, Kill9, Restart on the same address and data
// directory, Logs, DataDir).
type Server struct {
	*harness.Node // nil for the shared server, which TestMain controls

	tb     testing.TB // the test that started the server; nil for the shared one
	url    string     // http://host:port
	client *harness.Client
	record bool

	mu      sync.Mutex
	answers []string
}

func newServer(tb testing.TB, url string, node *harness.Node, record bool) *Server {
	return &Server{Node: node, tb: tb, url: url, client: harness.NewClient(128), record: record}
}

// startServer starts numberd with opts. It is killed when t ends, and on failure
// of t its last log lines are logged.
func startServer(t testing.TB, opts Options) *Server {
	t.Helper()
	cfg := opts.NodeConfig
	if opts.Config != nil {
		cfg.Args = append([]string{"--config", harness.WriteConfig(t, *opts.Config)}, cfg.Args...)
	}
	n := harness.StartNode(t, cfg)
	s := newServer(t, n.URL(), n, opts.Record)
	t.Cleanup(s.client.Close)
	return s
}

// Stop is harness.Node's Stop, SIGTERM and the exit status, after closing the
// client's idle connections, which would hold up a graceful shutdown.
func (s *Server) Stop() int {
	s.tb.Helper()
	s.client.Close()
	code := s.Node.Stop()
	s.client.Close()
	return code
}

// Kill9 is harness.Node's Kill9, SIGKILL, and closes the client's connections to
// the dead process.
func (s *Server) Kill9() {
	s.tb.Helper()
	s.Node.Kill9()
	s.client.Close()
}

// Answers returns every recorded answer (status line, headers and body), if the
// server was started with Record.
func (s *Server) Answers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.answers)
}

// findSecrets returns the texts that contain any of secrets.
func findSecrets(texts []string, secrets ...string) []string {
	var out []string
	for _, text := range texts {
		for _, sec := range secrets {
			if sec != "" && strings.Contains(text, sec) {
				out = append(out, fmt.Sprintf("contains %q: %.300s", sec, text))
			}
		}
	}
	return out
}
