package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/numberd/numberd/internal/testenv"
	"github.com/numberd/numberd/test/harness"
)

// TestDistributedStartupErrors starts distributed mode on Redis deployments it
// cannot use: numberd must exit 1 with the cause on its output, naming the
// server but never the password, rather than panic (exit 2) with the cause lost.
func TestDistributedStartupErrors(t *testing.T) {
	t.Parallel()
	dsn := testenv.MySQLDSN(t)
	password := secret("redis-pw-")
	wrong := secret("wrong-pw-")
	// The password is set once the server runs: StartRedis waits for an
	// unauthenticated PING to answer.
	locked := harness.StartRedis(t, "redis-auth")
	if err := locked.Client().ConfigSet(context.Background(), "requirepass", password).Err(); err != nil {
		t.Fatalf("setting requirepass: %v", err)
	}
	open := harness.StartRedis(t, "redis-open")
	closed := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))

	tests := []struct {
		name  string
		url   string
		addr  string
		cause *regexp.Regexp
	}{
		{"unreachable", "redis://" + closed + "/0", closed, regexp.MustCompile(`connection refused`)},
		{"wrong password", "redis://:" + wrong + "@" + locked.Addr() + "/0", locked.Addr(), regexp.MustCompile(`WRONGPASS|invalid password|invalid username-password`)},
		{"no password", "redis://" + locked.Addr() + "/0", locked.Addr(), regexp.MustCompile(`NOAUTH`)},
		{"db 99", "redis://" + open.Addr() + "/99", open.Addr(), regexp.MustCompile(`DB index is out of range`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, out := harness.RunToExit(t, nil, "serve", "--addr", "127.0.0.1:0", "--redis", tt.url, "--mysql", dsn)
			if code != 1 {
				t.Errorf("exit status %d, want 1; output:\n%s", code, out)
			}
			if strings.Contains(out, "panic:") || strings.Contains(out, "goroutine ") {
				t.Errorf("numberd panicked; output:\n%s", out)
			}
			if !tt.cause.MatchString(out) {
				t.Errorf("the output does not give the cause (want %q):\n%s", tt.cause, out)
			}
			if !strings.Contains(out, tt.addr) {
				t.Errorf("the output does not name the Redis server %s:\n%s", tt.addr, out)
			}
			if leaks := findSecrets([]string{out}, password, wrong); len(leaks) > 0 {
				t.Errorf("the output holds a password:\n%s", strings.Join(leaks, "\n"))
			}
		})
	}
}
