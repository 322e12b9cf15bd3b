package harness

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
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
