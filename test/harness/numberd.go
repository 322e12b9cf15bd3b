package harness

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timeouts of a numberd process's life.
const (
	// StartTimeout bounds the wait for the "listening" log line.
	StartTimeout = 30 * time.Second
	// StopTimeout bounds the wait for a SIGTERM'd process to exit.
	StopTimeout = 30 * time.Second
	// ExitTimeout bounds RunToExit: a command, or a node that must refuse to start.
	ExitTimeout = 10 * time.Second
)

// NodeConfig says how to start a numberd node.
type NodeConfig struct {
	// Name labels the node in logs and ledger entries; "node" if empty.
	Name string
	// RedisURL and MySQLDSN are --redis and --mysql: both set runs distributed mode.
	RedisURL string
	MySQLDSN string
	// DataDir is --data-dir, embedded mode's directory. Empty in embedded mode,
	// StartNode makes a temporary directory of the test, kept across restarts.
	DataDir string
	// Addr is --addr; empty means 127.0.0.1:0 (a free port).
	Addr string
	// Args are more command-line arguments, Env more "NAME=value" variables.
	Args []string
	Env  []string
}

// serveArgs is the command line of `numberd serve` listening on addr, without the
// binary.
func (c NodeConfig) serveArgs(addr string) []string {
	args := []string{"serve", "--addr", addr}
	if c.RedisURL != "" {
		args = append(args, "--redis", c.RedisURL)
	}
	if c.MySQLDSN != "" {
		args = append(args, "--mysql", c.MySQLDSN)
	}
	if c.DataDir != "" {
		args = append(args, "--data-dir", c.DataDir)
	}
	return append(args, c.Args...)
}

// listenAddr is the --addr of the first run.
func (c NodeConfig) listenAddr() string {
	if c.Addr == "" {
		return "127.0.0.1:0"
	}
	return c.Addr
}

// Node is a numberd process. A node that is killed or stopped can be started again
// with Restart, on the same address.
type Node struct {
	tb  testing.TB
	cfg NodeConfig
	// argv is the command line of a run listening on addr, without the binary.
	argv func(addr string) []string

	mu   sync.Mutex
	addr string   // host:port from the "listening" line, kept across restarts
	proc *Process // the current or last run
	// paused: the process was stopped by Pause and not yet continued.
	paused bool
	logs   []string // lines of earlier runs
	runs   int
}

// StartNode starts a numberd node and waits until it listens. The node is killed
// when tb ends; if tb failed, its last log lines are logged.
func StartNode(tb testing.TB, cfg NodeConfig) *Node {
	tb.Helper()
	if cfg.Name == "" {
		cfg.Name = "node"
	}
	if cfg.RedisURL == "" && cfg.DataDir == "" {
		cfg.DataDir = tb.TempDir()
	}
	n := newNode(tb, cfg, cfg.serveArgs)
	if err := n.start(); err != nil {
		tb.Fatalf("starting %s: %v", cfg.Name, err)
	}
	return n
}

// newNode returns a process of the numberd binary run with argv, not started yet,
// killed when tb ends.
func newNode(tb testing.TB, cfg NodeConfig, argv func(addr string) []string) *Node {
	n := &Node{tb: tb, cfg: cfg, addr: cfg.listenAddr(), argv: argv}
	tb.Cleanup(func() {
		n.kill()
		logs := n.Logs()
		if race := RaceReport(logs); race != "" {
			tb.Errorf("%s: the race detector reported a data race in numberd:\n%s", n.cfg.Name, race)
		}
		if tb.Failed() {
			tb.Logf("%s (%s), last log lines:\n%s", n.cfg.Name, n.addr, strings.Join(Tail(logs, 60), "\n"))
		}
	})
	return n
}

// Name is the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Addr is the host:port the node listens on.
func (n *Node) Addr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.addr
}

// URL is the node's base URL, http://host:port.
func (n *Node) URL() string { return "http://" + n.Addr() }

// DataDir is the node's --data-dir: in embedded mode the directory its data stays
// in across restarts; "" unless given in distributed mode.
func (n *Node) DataDir() string { return n.cfg.DataDir }

// Running reports whether the node's process runs.
func (n *Node) Running() bool {
	p := n.current()
	return p != nil && p.Running()
}

// current is the node's current or last run, nil before the first.
func (n *Node) current() *Process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// Kill9 kills the node with SIGKILL and waits for it to be gone.
func (n *Node) Kill9() {
	n.tb.Helper()
	if !n.Running() {
		n.tb.Fatalf("Kill9: %s is not running", n.cfg.Name)
	}
	n.kill()
}

// Pause stops the node's process with SIGSTOP, as a long GC pause, a frozen VM or
// a debugger would: it keeps its connections, its sockets keep receiving, but it
// runs nothing until Resume. A paused node is still killed when the test ends.
func (n *Node) Pause() {
	n.tb.Helper()
	n.signal("Pause", syscall.SIGSTOP)
	n.mu.Lock()
	n.paused = true
	n.mu.Unlock()
}

// Resume continues a node stopped by Pause with SIGCONT.
func (n *Node) Resume() {
	n.tb.Helper()
	n.signal("Resume", syscall.SIGCONT)
	n.mu.Lock()
	n.paused = false
	n.mu.Unlock()
}

// Paused reports whether the node's process runs but is stopped by Pause: it
// accepts connections and answers nothing.
func (n *Node) Paused() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.paused && n.proc != nil && n.proc.Running()
}

func (n *Node) signal(what string, sig syscall.Signal) {
	n.tb.Helper()
	p := n.current()
	if p == nil || !p.Running() {
		n.tb.Fatalf("%s: %s is not running", what, n.cfg.Name)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		n.tb.Fatalf("%s: signalling %s: %v", what, n.cfg.Name, err)
	}
}

// Stop sends SIGTERM and returns the exit status; a node still running after
// StopTimeout is killed and fails the test.
func (n *Node) Stop() int {
	n.tb.Helper()
	p := n.current()
	if p == nil || !p.Running() {
		n.tb.Fatalf("Stop: %s is not running", n.cfg.Name)
	}
	n.mu.Lock()
	n.paused = false // Terminate continues it
	n.mu.Unlock()
	code, err := p.Terminate()
	if err != nil {
		n.tb.Fatalf("Stop: %s %v", n.cfg.Name, err)
	}
	return code
}

// Restart starts the node again on its address after it was killed or stopped.
func (n *Node) Restart() {
	n.tb.Helper()
	if n.Running() {
		n.tb.Fatalf("Restart: %s is still running", n.cfg.Name)
	}
	if err := n.start(); err != nil {
		n.tb.Fatalf("restarting %s: %v", n.cfg.Name, err)
	}
}

// Logs returns the lines the node wrote, over all its runs.
func (n *Node) Logs() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := slices.Clone(n.logs)
	if n.proc != nil {
		out = append(out, n.proc.Logs()...)
	}
	return out
}

// LogsMatching returns the JSON log lines whose "msg" is msg.
func (n *Node) LogsMatching(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range n.Logs() {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

func (n *Node) kill() {
	if p := n.current(); p != nil {
		p.Kill()
	}
}

func (n *Node) start() error {
	n.mu.Lock()
	addr := n.addr
	if n.proc != nil {
		n.logs = append(n.logs, n.proc.Logs()...)
		n.logs = append(n.logs, fmt.Sprintf("---- %s restarted ----", n.cfg.Name))
	}
	n.runs++
	n.paused = false
	n.mu.Unlock()

	p, err := startProcess(Binary(n.tb), n.tb.TempDir(), n.argv(addr), n.cfg.Env)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.proc = p
	if err != nil {
		return err
	}
	n.addr = p.addr
	return nil
}

// Process is one run of the numberd binary. It belongs to no test: a Node starts
// one for each of its runs, and a TestMain may start one with Launch for all its
// tests to share.
type Process struct {
	cmd    *exec.Cmd
	log    *lineLog
	addr   string        // host:port from the "listening" line
	done   chan struct{} // closed once the process exited
	waited error         // cmd.Wait's answer, valid once done is closed
}

// Launch starts a numberd node as cfg says, with the working directory dir, and
// waits until it listens, as StartNode does; but the node belongs to no test. It is
// for a TestMain that starts one node before m.Run for its tests to share: it
// returns an error where StartNode fails the test, and the node runs until
// Terminate or Kill. In embedded mode cfg.DataDir is best set; numberd's default
// is a directory in dir.
func Launch(cfg NodeConfig, dir string) (*Process, error) {
	bin, err := Build()
	if err != nil {
		return nil, err
	}
	p, err := startProcess(bin, dir, cfg.serveArgs(cfg.listenAddr()), cfg.Env)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// startProcess runs bin with args in dir and waits until it logs "listening". It
// returns the process whenever it started, even with an error: then it has exited,
// or it was killed when it did not listen within StartTimeout.
func startProcess(bin, dir string, args, env []string) (*Process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = nodeEnv(env)
	log := newLineLog()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		p.waited = cmd.Wait()
		log.flush()
		close(p.done)
	}()
	select {
	case a := <-log.listening:
		p.addr = dialable(a)
		return p, nil
	case <-p.done:
		return p, fmt.Errorf("numberd %q exited (%v) before logging \"listening\":\n%s", args, p.waited, strings.Join(Tail(log.all(), 40), "\n"))
	case <-time.After(StartTimeout):
		p.Kill()
		return p, fmt.Errorf("numberd %q did not log \"listening\" within %v:\n%s", args, StartTimeout, strings.Join(Tail(log.all(), 40), "\n"))
	}
}

// Addr is the host:port the process listens on.
func (p *Process) Addr() string { return p.addr }

// URL is the process's base URL, http://host:port.
func (p *Process) URL() string { return "http://" + p.addr }

// Logs returns the lines the process wrote so far, stdout and stderr.
func (p *Process) Logs() []string { return p.log.all() }

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Kill kills the process with SIGKILL, if it still runs, and waits until it is gone.
func (p *Process) Kill() {
	if p.Running() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// Terminate sends SIGTERM, and SIGCONT, which a process stopped by SIGSTOP needs to
// act on it, and returns the exit status once the process exited. A process still
// running after StopTimeout is killed, and the error says so.
func (p *Process) Terminate() (int, error) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), nil
	case <-time.After(StopTimeout):
		p.Kill()
		return -1, fmt.Errorf("did not exit within %v of SIGTERM", StopTimeout)
	}
}

// RunToExit runs the numberd binary with args to its end, which must come within
// ExitTimeout: a command such as migrate, or a node that must refuse to start. It
// returns the exit status and the output, stdout and stderr. The environment is the
// one nodes get, plus env. A process still running at the deadline is killed and
// fails tb, and so does a data race in the output.
func RunToExit(tb testing.TB, env []string, args ...string) (int, string) {
	tb.Helper()
	cmd := exec.Command(Binary(tb), args...)
	cmd.Dir = tb.TempDir()
	cmd.Env = nodeEnv(env)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting numberd %q: %v", args, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			tb.Fatalf("numberd %q: %v", args, err)
		}
	case <-time.After(ExitTimeout):
		_ = cmd.Process.Kill()
		<-done
		tb.Fatalf("numberd %q still ran after %v, want it to exit at once; its output:\n%s", args, ExitTimeout, out.String())
	}
	if race := RaceReport(strings.Split(out.String(), "\n")); race != "" {
		tb.Errorf("numberd %q: the race detector reported a data race:\n%s", args, race)
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

// nodeEnv is the test's environment without NUMBERD_ variables (a stray
// NUMBERD_ADMIN_TOKEN would configure tokens), plus JSON logs and extra.
func nodeEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NUMBERD_") {
			env = append(env, kv)
		}
	}
	env = append(env, "NUMBERD_LOG_FORMAT=json", "NUMBERD_LOG_LEVEL=info")
	return append(env, extra...)
}

// dialable turns a listen address into one a client can dial.
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

// RaceReport returns the race detector's first report in logs, with what follows
// it, or "".
func RaceReport(logs []string) string {
	for i, l := range logs {
		if strings.Contains(l, "WARNING: DATA RACE") {
			return strings.Join(logs[i:min(len(logs), i+60)], "\n")
		}
	}
	return ""
}

// Tail returns the last n of lines.
func Tail(lines []string, n int) []string {
	if len(lines) > n {
		return lines[len(lines)-n:]
	}
	return lines
}

// lineLog collects a process's output line by line and reports the address of the
// first JSON log line whose msg is "listening".
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
