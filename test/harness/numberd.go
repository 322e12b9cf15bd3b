package harness

import (
	"bytes"
	"encoding/json"
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
)

// NodeConfig says how to start a numberd node.
type NodeConfig struct {
	// Name labels the node in logs and ledger entries; "node" if empty.
	Name string
	// RedisURL and MySQLDSN are --redis and --mysql: both set runs distributed mode.
	RedisURL string
	MySQLDSN string
	// Addr is --addr; empty means 127.0.0.1:0 (a free port).
	Addr string
	// Args are more command-line arguments, Env more "NAME=value" variables.
	Args []string
	Env  []string
}

// Node is a numberd process. A node that is killed or stopped can be started again
// with Restart, on the same address.
type Node struct {
	tb  testing.TB
	cfg NodeConfig
	// argv is the command line of a run listening on addr, without the binary.
	argv func(addr string) []string

	mu   sync.Mutex
	addr string // host:port from the "listening" line, kept across restarts
	proc *process
	// paused: the process was stopped by Pause and not yet continued.
	paused bool
	logs   []string // lines of earlier runs
	runs   int
}

// process is one run of a node.
type process struct {
	cmd    *exec.Cmd
	log    *lineLog
	done   chan struct{} // closed once the process exited
	waited error
}

// StartNode starts a numberd node and waits until it listens. The node is killed
// when tb ends; if tb failed, its last log lines are logged.
func StartNode(tb testing.TB, cfg NodeConfig) *Node {
	tb.Helper()
	if cfg.Name == "" {
		cfg.Name = "node"
	}
	n := newNode(tb, cfg, func(addr string) []string {
		args := []string{"serve", "--addr", addr}
		if cfg.RedisURL != "" {
			args = append(args, "--redis", cfg.RedisURL)
		}
		if cfg.MySQLDSN != "" {
			args = append(args, "--mysql", cfg.MySQLDSN)
		}
		return append(args, cfg.Args...)
	})
	if err := n.start(); err != nil {
		tb.Fatalf("starting %s: %v", cfg.Name, err)
	}
	return n
}

// newNode returns a process of the numberd binary run with argv, not started yet,
// killed when tb ends.
func newNode(tb testing.TB, cfg NodeConfig, argv func(addr string) []string) *Node {
	n := &Node{tb: tb, cfg: cfg, addr: cfg.Addr, argv: argv}
	if n.addr == "" {
		n.addr = "127.0.0.1:0"
	}
	tb.Cleanup(func() {
		n.kill()
		logs := n.Logs()
		if race := raceReports(logs); race != "" {
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

// Running reports whether the node's process runs.
func (n *Node) Running() bool {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	return p != nil && p.running()
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
	return n.paused && n.proc != nil && n.proc.running()
}

func (n *Node) signal(what string, sig syscall.Signal) {
	n.tb.Helper()
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil || !p.running() {
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
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil || !p.running() {
		n.tb.Fatalf("Stop: %s is not running", n.cfg.Name)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	_ = p.cmd.Process.Signal(syscall.SIGCONT) // a paused node could not act on it
	n.mu.Lock()
	n.paused = false
	n.mu.Unlock()
	select {
	case <-p.done:
	case <-time.After(StopTimeout):
		n.kill()
		n.tb.Fatalf("Stop: %s did not exit within %v of SIGTERM", n.cfg.Name, StopTimeout)
	}
	return p.cmd.ProcessState.ExitCode()
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
		out = append(out, n.proc.log.all()...)
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
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil {
		return
	}
	if p.running() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

func (n *Node) start() error {
	n.mu.Lock()
	addr := n.addr
	if n.proc != nil {
		n.logs = append(n.logs, n.proc.log.all()...)
		n.logs = append(n.logs, fmt.Sprintf("---- %s restarted ----", n.cfg.Name))
	}
	n.runs++
	n.paused = false
	n.mu.Unlock()

	args := n.argv(addr)
	cmd := exec.Command(Binary(n.tb), args...)
	cmd.Dir = n.tb.TempDir()
	cmd.Env = nodeEnv(n.cfg.Env)
	log := newLineLog()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &process{cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		p.waited = cmd.Wait()
		log.flush()
		close(p.done)
	}()
	n.mu.Lock()
	n.proc = p
	n.mu.Unlock()
	select {
	case a := <-log.listening:
		n.mu.Lock()
		n.addr = dialable(a)
		n.mu.Unlock()
		return nil
	case <-p.done:
		return fmt.Errorf("numberd %q exited (%v) before logging \"listening\":\n%s", args, p.waited, strings.Join(Tail(log.all(), 40), "\n"))
	case <-time.After(StartTimeout):
		n.kill()
		return fmt.Errorf("numberd %q did not log \"listening\" within %v:\n%s", args, StartTimeout, strings.Join(Tail(log.all(), 40), "\n"))
	}
}

func (p *process) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
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

// raceReports returns the race detector's reports in logs, or "".
func raceReports(logs []string) string {
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
