package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/numberd/numberd/test/harness"
)

// TestConfigErrors starts the binary with malformed settings, from flags, from
// environment variables and from the config file: each must exit 1 at once, the
// output naming every malformed setting and the form it wants, and nothing
// started: no listening line, no data directory.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	conf := filepath.Join(t.TempDir(), "numberd.yaml")
	if err := os.WriteFile(conf, []byte("upstreams:\n  leqi: {url: \"http://127.0.0.1:9\", timeout: 500}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  []string
		args []string
		want []string
	}{
		{"a number that is none", []string{"NUMBERD_LEASE_MAX=abc"}, nil,
			[]string{`NUMBERD_LEASE_MAX="abc": want a whole number from 1 to`}},
		{"a duration without a unit", []string{"NUMBERD_REQUEST_TIMEOUT=500"}, nil,
			[]string{`NUMBERD_REQUEST_TIMEOUT="500": want a duration with a unit`}},
		{"a boolean that is none", []string{"NUMBERD_INSECURE=maybe"}, nil,
			[]string{`NUMBERD_INSECURE="maybe": want true or false`}},
		{"zero and negative flags", nil, []string{"--refill-scan", "0", "--shutdown-timeout=-1s", "--lease-max", "0"},
			[]string{`--refill-scan "0": want a duration`, `--shutdown-timeout "-1s": want a duration`, `--lease-max "0": want a whole number`}},
		{"out of range", nil, []string{"--lease-max", "99999999999999999999"},
			[]string{`--lease-max "99999999999999999999": want a whole number from 1 to`}},
		{"the garbage collector's target", []string{"GOGC=lots"}, nil,
			[]string{`GOGC="lots": want off or a whole number`}},
		{"a file's timeout without a unit", nil, []string{"--config", conf},
			[]string{`upstreams.leqi.timeout "500": want a duration with a unit`}},
		{"migrate", []string{"NUMBERD_REFILL_LEASE=10"}, []string{"migrate"},
			[]string{`NUMBERD_REFILL_LEASE="10": want a duration with a unit`}},
		{"upstream-sim", []string{"NUMBERD_SIM_FAIL_RATE=often"}, []string{"upstream-sim", "--addr", "127.0.0.1:0", "--digits", "40"},
			[]string{`NUMBERD_SIM_FAIL_RATE="often": want a number from 0 to 1`, `--digits "40": want a whole number from 1 to 32`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dataDir := filepath.Join(t.TempDir(), "data")
			args := tt.args
			if len(args) == 0 || strings.HasPrefix(args[0], "-") {
				args = append([]string{"serve"}, args...)
			}
			if args[0] != "upstream-sim" {
				args = append(args, "--addr", "127.0.0.1:0", "--data-dir", dataDir)
			}
			code, out := harness.RunToExit(t, tt.env, args...)
			if code != 1 {
				t.Errorf("exit status %d, want 1; output:\n%s", code, out)
			}
			for _, want := range tt.want {
				if !strings.Contains(out, want) {
					t.Errorf("the output does not say %q:\n%s", want, out)
				}
			}
			if strings.Contains(out, "listening") || strings.Contains(out, "panic:") {
				t.Errorf("numberd started or panicked; output:\n%s", out)
			}
			if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the data directory was made (%v): numberd started", err)
			}
		})
	}
}
