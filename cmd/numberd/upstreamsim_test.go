package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/numberd/numberd/internal/refill"
)

// buildNumberd builds the numberd binary into a temporary directory.
func buildNumberd(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "numberd")
	goTool := "go"
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			goTool = p
		}
	}
	cmd := exec.Command(goTool, "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// simEnv is the test's environment without NUMBERD_ variables, plus extra.
func simEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NUMBERD_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// simProcess is a running `numberd upstream-sim`.
type simProcess struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{} // closed when the process exited and its output was read

	mu    sync.Mutex
	lines []string
}

func (p *simProcess) logs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// startSim starts bin upstream-sim with args and env, and waits for its JSON
// "listening" line.
func startSim(tb testing.TB, bin string, env []string, args ...string) *simProcess {
	tb.Helper()
	cmd := exec.Command(bin, append([]string{"upstream-sim"}, args...)...)
	cmd.Env = env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &simProcess{cmd: cmd, done: make(chan struct{})}
	listening := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.lines = append(p.lines, line)
			p.mu.Unlock()
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" && rec.Addr != "" {
				select {
				case listening <- rec.Addr:
				default:
				}
			}
		}
		_ = cmd.Wait()
	}()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if tb.Failed() {
			tb.Logf("upstream-sim's log:\n%s", strings.Join(p.logs(), "\n"))
		}
	})
	select {
	case p.addr = <-listening:
	case <-p.done:
		tb.Fatalf("upstream-sim exited before listening: %v\n%s", cmd.ProcessState, strings.Join(p.logs(), "\n"))
	case <-time.After(30 * time.Second):
		tb.Fatalf("upstream-sim did not log \"listening\" within 30s:\n%s", strings.Join(p.logs(), "\n"))
	}
	return p
}

// stop sends SIGTERM and returns the exit status.
func (p *simProcess) stop(tb testing.TB) int {
	tb.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		tb.Fatalf("upstream-sim did not exit within 15s of SIGTERM")
	}
	return p.cmd.ProcessState.ExitCode()
}

func TestUpstreamSimBinary(t *testing.T) {
	const token = "sim-e2e-secret"
	bin := buildNumberd(t)
	// Flags win over the environment: --digits 10 over NUMBERD_SIM_DIGITS=8; the
	// other variables hold.
	env := simEnv("NUMBERD_LOG_FORMAT=json", "NUMBERD_LOG_LEVEL=debug", "NUMBERD_SIM_DIGITS=8",
		"NUMBERD_SIM_FIRST=0000000100", "NUMBERD_SIM_TOKEN="+token, "NUMBERD_SIM_ADDR=127.0.0.1:1")
	p := startSim(t, bin, env, "--addr", "127.0.0.1:0", "--digits", "10", "--latency", "10ms")
	if strings.HasSuffix(p.addr, ":0") || strings.HasSuffix(p.addr, ":1") {
		t.Fatalf("listening on %s, want the real port", p.addr)
	}
	base := "http://" + p.addr

	up, err := refill.NewHTTPUpstream(base, token, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got, err := up.Apply(context.Background(), "acme-vat", 50, "e2e-1")
	if want := (refill.Grant{Ywlsh: "e2e-1", Start: "0000000100", End: "0000000149"}); err != nil || got != want {
		t.Errorf("Apply = %+v, %v; want %+v", got, err, want)
	}
	wrong, err := refill.NewHTTPUpstream(base, "wrong", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrong.Apply(context.Background(), "acme-vat", 50, "e2e-2"); !errors.Is(err, refill.ErrRefused) {
		t.Errorf("Apply with a wrong token: %v, want ErrRefused", err)
	}

	resp, err := http.Get(base + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `{"applies":2,"granted":1,"numbers":50}`; resp.StatusCode != 200 || strings.TrimSpace(string(body)) != want {
		t.Errorf("GET /stats = %d %s, want 200 %s", resp.StatusCode, body, want)
	}

	if code := p.stop(t); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	var grants, stopped int
	for _, line := range p.logs() {
		if strings.Contains(line, token) {
			t.Errorf("a log line shows the token: %s", line)
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line not JSON: %s", line)
			continue
		}
		switch rec["msg"] {
		case "granted":
			grants++
			if rec["level"] != "DEBUG" || rec["ywlsh"] != "e2e-1" || rec["start"] != "0000000100" {
				t.Errorf("grant line %s, want a DEBUG line of ywlsh e2e-1 from 0000000100", line)
			}
		case "stopped":
			stopped++
		}
	}
	if grants != 1 || stopped != 1 {
		t.Errorf("%d grant and %d stopped lines, want 1 and 1", grants, stopped)
	}
}

func TestUpstreamSimBinaryLogsAsConfigured(t *testing.T) {
	bin := buildNumberd(t)
	tests := []struct {
		name string
		env  []string
		args []string
	}{
		{"text by default, no grant lines at info", nil, nil},
		{"text by flag", []string{"NUMBERD_LOG_FORMAT=json"}, []string{"--log-format", "text"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The listening line is read as JSON, so a text sim is found by its text line.
			cmd := exec.Command(bin, append([]string{"upstream-sim", "--addr", "127.0.0.1:0"}, tt.args...)...)
			cmd.Env = simEnv(tt.env...)
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			sc := bufio.NewScanner(stderr)
			if !sc.Scan() {
				t.Fatalf("no log line: %v", sc.Err())
			}
			line := sc.Text()
			if !strings.Contains(line, "msg=listening addr=127.0.0.1:") || strings.Contains(line, "addr=127.0.0.1:0 ") {
				t.Fatalf("first line %q, want a text listening line with the real port", line)
			}
			addr := strings.Fields(strings.SplitN(line, "addr=", 2)[1])[0]
			up, err := refill.NewHTTPUpstream("http://"+addr, "", 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := up.Apply(context.Background(), "p", 10, "y"); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Process.Signal(syscall.SIGTERM)
			rest, _ := io.ReadAll(stderr)
			if err := cmd.Wait(); err != nil {
				t.Errorf("after SIGTERM: %v, want exit 0", err)
			}
			if strings.Contains(string(rest), "msg=granted") {
				t.Errorf("a grant logged at info level:\n%s", rest)
			}
			if !strings.Contains(string(rest), "msg=stopped") {
				t.Errorf("no stopped line:\n%s", rest)
			}
		})
	}
}

func TestUpstreamSimBinaryRejectsBadFlags(t *testing.T) {
	bin := buildNumberd(t)
	tests := []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"unknown flag", nil, []string{"--nope"}, 2, "flag provided but not defined: -nope"},
		{"extra argument", nil, []string{"now"}, 2, `unexpected argument "now"`},
		{"digits 0", nil, []string{"--digits", "0"}, 1, `--digits "0": want a whole number from 1 to 32`},
		{"digits not a number", nil, []string{"--digits", "x"}, 1, `--digits "x": want a whole number`},
		{"first of another width", nil, []string{"--digits", "8", "--first", "1"}, 1, `--first "1": want a number of 8 digits`},
		{"fail rate over 1", nil, []string{"--fail-rate", "1.5"}, 1, `--fail-rate "1.5": want a number from 0 to 1`},
		{"negative lose rate", nil, []string{"--lose-rate=-0.5"}, 1, `--lose-rate "-0.5": want a number from 0 to 1`},
		{"negative latency", nil, []string{"--latency", "-1s"}, 1, `--latency "-1s": want a duration`},
		{"log format", nil, []string{"--log-format", "xml"}, 1, `--log-format "xml": want text or json`},
		{"address", nil, []string{"--addr", "nowhere"}, 1, `--addr "nowhere": want host:port`},
		{"bad variable", []string{"NUMBERD_SIM_FAIL_RATE=often"}, nil, 1, `NUMBERD_SIM_FAIL_RATE="often"`},
		{"bad log level", []string{"NUMBERD_LOG_LEVEL=loud"}, nil, 1, `NUMBERD_LOG_LEVEL="loud"`},
		{"a flag wins over a bad variable's value", []string{"NUMBERD_SIM_DIGITS=40"}, []string{"--digits", "0"}, 1, `--digits "0"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(bin, append([]string{"upstream-sim", "--addr", "127.0.0.1:0"}, tt.args...)...)
			cmd.Env = simEnv(tt.env...)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != tt.code {
				t.Fatalf("exit: %v, want status %d; output:\n%s", err, tt.code, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("output %q, want it to hold %q", out, tt.want)
			}
		})
	}
}
