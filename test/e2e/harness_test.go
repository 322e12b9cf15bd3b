package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
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

const (
	startTimeout = 15 * time.Second // for the "listening" log line
	stopTimeout  = 30 * time.Second // for a SIGTERM'd process to exit
	exitTimeout  = 10 * time.Second // for a process that must refuse to start
)

var (
	// binPath is the numberd binary TestMain built.
	binPath string
	// shared is the server most tests share, started by TestMain with sharedConfig.
	shared *Server
)

func sharedConfig() *Config {
	return &Config{Tokens: []Token{
		{Token: adminToken, Role: "admin"},
		{Token: clientOne, Role: "client", Pools: []string{idemScopePool}},
		{Token: clientTwo, Role: "client", Pools: []string{idemScopePool}},
	}}
}

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "numberd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)

	binPath = filepath.Join(dir, "numberd")
	build := exec.Command(goTool(), "build", "-o", binPath, "github.com/numberd/numberd/cmd/numberd")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: FAIL: building the numberd binary: %v\n%s\n", err, out)
		return 1
	}

	cfg, err := writeConfig(dir, sharedConfig())
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	shared, err = launch(Options{DataDir: filepath.Join(dir, "shared-data"), configPath: cfg})
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: FAIL: starting the shared server: %v\n", err)
		return 1
	}
	code := m.Run()
	exit := shared.terminate()
	if exit != 0 {
		fmt.Fprintf(os.Stderr, "e2e: FAIL: the shared server exited %d on SIGTERM, want 0; its log:\n%s\n", exit, strings.Join(shared.Logs(), "\n"))
		code = 1
	}
	if leaks := findSecrets(shared.Logs(), adminToken, clientOne, clientTwo); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: FAIL: the shared server logged a token:\n%s\n", strings.Join(leaks, "\n"))
		code = 1
	}
	if code != 0 && exit == 0 {
		fmt.Fprintf(os.Stderr, "e2e: the shared server's last log lines:\n%s\n", strings.Join(tail(shared.Logs(), 60), "\n"))
	}
	return code
}

// goTool is the go command of the toolchain running the tests.
func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// Config is numberd's configuration file (API.md, "Running numberd").
type Config struct {
	Tokens    []Token
	Upstreams map[string]Upstream
}

// Token is one configured bearer token.
type Token struct {
	Token string
	Role  string // "admin" or "client"
	Pools []string
}

// Upstream is one configured segment source.
type Upstream struct {
	URL     string
	Token   string
	Timeout string // a Go duration, e.g. "2s"
}

// YAML renders c in the layout of API.md.
func (c *Config) YAML() string {
	var b strings.Builder
	b.WriteString("tokens:\n")
	for _, tk := range c.Tokens {
		fmt.Fprintf(&b, "  - token: %q\n    role: %s\n", tk.Token, tk.Role)
		if tk.Role == "client" {
			quoted := make([]string, len(tk.Pools))
			for i, p := range tk.Pools {
				quoted[i] = fmt.Sprintf("%q", p)
			}
			fmt.Fprintf(&b, "    pools: [%s]\n", strings.Join(quoted, ", "))
		}
	}
	if len(c.Upstreams) > 0 {
		b.WriteString("upstreams:\n")
		names := make([]string, 0, len(c.Upstreams))
		for n := range c.Upstreams {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			u := c.Upstreams[n]
			fmt.Fprintf(&b, "  %s:\n    url: %q\n    token: %q\n", n, u.URL, u.Token)
			if u.Timeout != "" {
				fmt.Fprintf(&b, "    timeout: %s\n", u.Timeout)
			}
		}
	}
	return b.String()
}

func writeConfig(dir string, c *Config) (string, error) {
	p := filepath.Join(dir, fmt.Sprintf("numberd-%d.yaml", seq.Add(1)))
	if err := os.WriteFile(p, []byte(c.YAML()), 0o600); err != nil {
		return "", fmt.Errorf("writing the config file: %w", err)
	}
	return p, nil
}

// Options says how to start a server.
type Options struct {
	// DataDir is the --data-dir; empty means a fresh temporary directory. Pass the
	// DataDir of a stopped server to restart on its data.
	DataDir string
	// Config, if set, is written to a file and passed as --config; nil runs the
	// server without tokens (open mode).
	Config *Config
	// Addr is the --addr; empty means 127.0.0.1:0.
	Addr string
	// Args are more arguments after the flags above, e.g. "--insecure".
	Args []string
	// Env are more environment variables, "NAME=value".
	Env []string
	// Record keeps every answer (headers and body) for Server.Answers.
	Record bool

	configPath string // set by startServer and TestMain
}

// Server is a running numberd process.
type Server struct {
	URL     string // http://host:port
	Addr    string // host:port from the "listening" log line
	DataDir string
	Cmd     *exec.Cmd

	client *http.Client
	log    *lineLog
	done   chan struct{} // closed once the process has exited
	waited error         // cmd.Wait's answer, valid after done

	record  bool
	mu      sync.Mutex
	answers []string
}

var seq atomic.Int64 // unique names: config files, pools

// startServer starts numberd with opts and stops it (SIGKILL) when t ends. It fails
// t if the server does not log "listening" within startTimeout. On failure of t the
// server's log is printed.
func startServer(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	if opts.Config != nil {
		p, err := writeConfig(t.TempDir(), opts.Config)
		if err != nil {
			t.Fatal(err)
		}
		opts.configPath = p
	}
	s, err := launch(opts)
	if err != nil {
		t.Fatalf("starting numberd: %v", err)
	}
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("numberd pid %d (data dir %s), last log lines:\n%s", s.Cmd.Process.Pid, s.DataDir, strings.Join(tail(s.Logs(), 80), "\n"))
		}
	})
	return s
}

// serverArgs are the command line of `numberd serve` for opts.
func serverArgs(opts Options) []string {
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	args := []string{"serve", "--addr", addr, "--data-dir", opts.DataDir}
	if opts.configPath != "" {
		args = append(args, "--config", opts.configPath)
	}
	return append(args, opts.Args...)
}

// serverEnv is the environment of a numberd process: the test's, without any
// NUMBERD_ variable, plus the JSON log settings and extra.
func serverEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NUMBERD_") {
			env = append(env, kv)
		}
	}
	env = append(env, "NUMBERD_LOG_FORMAT=json", "NUMBERD_LOG_LEVEL=info")
	return append(env, extra...)
}

func launch(opts Options) (*Server, error) {
	cmd := exec.Command(binPath, serverArgs(opts)...)
	cmd.Env = serverEnv(opts.Env)
	log := newLineLog()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{DataDir: opts.DataDir, Cmd: cmd, log: log, done: make(chan struct{}), record: opts.Record}
	go func() {
		s.waited = cmd.Wait()
		log.flush()
		close(s.done)
	}()
	select {
	case addr := <-log.listening:
		s.Addr = dialable(addr)
	case <-s.done:
		return nil, fmt.Errorf("numberd %q exited (%v) before logging \"listening\"; its output:\n%s",
			cmd.Args, s.waited, strings.Join(s.Logs(), "\n"))
	case <-time.After(startTimeout):
		s.kill()
		return nil, fmt.Errorf("numberd %q did not log \"listening\" within %s; its output:\n%s",
			cmd.Args, startTimeout, strings.Join(s.Logs(), "\n"))
	}
	s.URL = "http://" + s.Addr
	s.client = &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        128,
			MaxIdleConnsPerHost: 128,
			IdleConnTimeout:     30 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return s, nil
}

// dialable turns a listen address into one a client can dial: an unspecified host
// becomes the loopback address.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// Logs returns every line the process wrote so far (stderr and stdout).
func (s *Server) Logs() []string { return s.log.all() }

// Running reports whether the process has not exited yet.
func (s *Server) Running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// ExitCode is the process's exit status, -1 if killed by a signal or still running.
func (s *Server) ExitCode() int {
	if s.Running() || s.Cmd.ProcessState == nil {
		return -1
	}
	return s.Cmd.ProcessState.ExitCode()
}

// Kill9 kills the process with SIGKILL and waits for it.
func (s *Server) Kill9(t testing.TB) {
	t.Helper()
	if !s.Running() {
		t.Fatalf("Kill9: numberd had already exited (%v)", s.waited)
	}
	s.kill()
}

func (s *Server) kill() {
	if s.Running() {
		_ = s.Cmd.Process.Signal(syscall.SIGKILL)
	}
	<-s.done
	if s.client != nil {
		s.client.CloseIdleConnections()
	}
}

// Stop sends SIGTERM, waits for the process to exit and returns its exit status.
// It fails t if the process does not exit within stopTimeout.
func (s *Server) Stop(t testing.TB) int {
	t.Helper()
	if !s.Running() {
		t.Fatalf("Stop: numberd had already exited (%v)", s.waited)
	}
	code := s.terminate()
	if code == -2 {
		t.Fatalf("Stop: numberd did not exit within %s of SIGTERM (killed)", stopTimeout)
	}
	return code
}

// terminate is Stop without a test: -2 means it had to be killed.
func (s *Server) terminate() int {
	if !s.Running() {
		return s.ExitCode()
	}
	if s.client != nil {
		// Unused connections the transport dialled would hold up a graceful shutdown.
		s.client.CloseIdleConnections()
	}
	_ = s.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		s.kill()
		return -2
	}
	if s.client != nil {
		s.client.CloseIdleConnections()
	}
	return s.ExitCode()
}

// Answers returns every recorded answer (status line, headers and body), if the
// server was started with Record.
func (s *Server) Answers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.answers)
}

// lineLog collects a process's output line by line and reports the address of
// the first JSON log line with "msg":"listening".
type lineLog struct {
	mu        sync.Mutex
	partial   []byte
	lines     []string
	listening chan string
	found     bool
}

func newLineLog() *lineLog { return &lineLog{listening: make(chan string, 1)} }

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.add(string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
	return len(p), nil
}

func (l *lineLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 {
		l.add(string(l.partial))
		l.partial = nil
	}
}

// add keeps line; called with l.mu held.
func (l *lineLog) add(line string) {
	l.lines = append(l.lines, line)
	if l.found {
		return
	}
	var rec struct {
		Msg  string `json:"msg"`
		Addr string `json:"addr"`
	}
	if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" && rec.Addr != "" {
		l.found = true
		l.listening <- rec.Addr
	}
}

func (l *lineLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

func tail(lines []string, n int) []string {
	if len(lines) > n {
		return lines[len(lines)-n:]
	}
	return lines
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

// runNumberd runs the binary with args and env to its end, which must come within
// exitTimeout; it returns the exit status and the combined output. A process still
// running at the deadline fails t.
func runNumberd(t testing.TB, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = serverEnv(env)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting numberd %q: %v", args, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(exitTimeout):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("numberd %q still ran after %s, want it to exit at once; its output:\n%s", args, exitTimeout, out.String())
	}
	return cmd.ProcessState.ExitCode(), out.String()
}
