package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisServerEnv names the redis-server binary tests start their own servers from.
const RedisServerEnv = "NUMBERD_TEST_REDIS_SERVER"

// RedisServer is a redis-server process a test started and may kill, restart or
// flush at will. It keeps nothing on disk, so a restart comes back empty.
type RedisServer struct {
	tb   testing.TB
	bin  string
	dir  string
	Port int
	args []string
	cmd  *exec.Cmd
}

// StartRedis starts a throwaway redis-server on a free loopback port; extra
// arguments are passed to it. It is killed when tb ends.
func StartRedis(tb testing.TB, extra ...string) *RedisServer {
	tb.Helper()
	bin := os.Getenv(RedisServerEnv)
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("redis-server"); err != nil {
			tb.Fatalf("%s is not set and redis-server is not on PATH: run the tests with `make test`", RedisServerEnv)
		}
	}
	r := &RedisServer{tb: tb, bin: bin, dir: tb.TempDir(), Port: FreePort(tb), args: extra}
	r.Start()
	tb.Cleanup(r.Kill)
	return r
}

// Addr is the server's host:port.
func (r *RedisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.Port) }

// Start starts the server (again) on its port and waits until it answers.
func (r *RedisServer) Start() {
	r.tb.Helper()
	args := append([]string{"--bind", "127.0.0.1", "--port", strconv.Itoa(r.Port), "--save", "", "--appendonly", "no",
		"--dir", r.dir, "--logfile", filepath.Join(r.dir, "redis.log")}, r.args...)
	r.cmd = exec.Command(r.bin, args...)
	if err := r.cmd.Start(); err != nil {
		r.tb.Fatalf("start redis-server: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			r.tb.Fatalf("redis-server on %s did not answer: %v\n%s", r.Addr(), err, r.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops the server with SIGKILL; what it held is gone.
func (r *RedisServer) Kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// Restart kills the server and starts an empty one on the same port.
func (r *RedisServer) Restart() {
	r.tb.Helper()
	r.Kill()
	r.Start()
}

// Client returns a client of the server, closed when the test ends.
func (r *RedisServer) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr()})
	r.tb.Cleanup(func() { _ = c.Close() })
	return c
}

func (r *RedisServer) log() string {
	f, err := os.Open(filepath.Join(r.dir, "redis.log"))
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		lines = append(lines, s.Text())
	}
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Eventually polls cond every 20 ms until it holds or timeout passes.
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal(fmt.Sprintf("%s: not within %v", what, timeout))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
