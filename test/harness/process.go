package harness

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
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
