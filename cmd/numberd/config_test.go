package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// command is a command whose settings the tests read.
type command struct {
	name     string
	settings []setting
	// read reads a fresh configuration from args and the environment.
	read func(fs *flag.FlagSet, args []string) error
}

func commands() []command {
	return []command{
		{"serve", new(Config).settings(), func(fs *flag.FlagSet, args []string) error { return new(Config).read(fs, args) }},
		{"upstream-sim", new(simConfig).settings(), func(fs *flag.FlagSet, args []string) error { return new(simConfig).read(fs, args) }},
	}
}

// clearEnv unsets every variable of cmd's settings for t: an empty variable
// counts as unset.
func clearEnv(t *testing.T, cmd command) {
	t.Helper()
	for _, s := range cmd.settings {
		if s.env != "" {
			t.Setenv(s.env, "")
		}
	}
}

// readWith reads cmd's configuration from args and vars (NAME=value), with every
// other variable of cmd unset, the flag package's output in out.
func (cmd command) readWith(t *testing.T, out io.Writer, args []string, vars ...string) error {
	t.Helper()
	clearEnv(t, cmd)
	for _, kv := range vars {
		name, value, _ := strings.Cut(kv, "=")
		t.Setenv(name, value)
	}
	fs := flag.NewFlagSet("numberd "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(out)
	return cmd.read(fs, args)
}

// malformed holds values not of the form of every setting that takes a form, by
// command and setting.key. TestMalformedSettingsRefused fails for a setting
// missing here.
var malformed = map[string][]string{
	"serve addr":             {"nowhere", "127.0.0.1", "127.0.0.1:99999", "127.0.0.1:-1"},
	"serve insecure":         {"maybe", "yes", "2", "on"},
	"serve log-level":        {"loud", "verbose"},
	"serve log-format":       {"xml", "JSON"},
	"serve request-timeout":  {"500", "0", "-1s", "5 s", "abc", "1e3s"},
	"serve shutdown-timeout": {"30", "0s", "-30s", "soon"},
	"serve lease-max":        {"abc", "0", "-1", "1.5", "0x10", "1_000", "+5", "9007199254740993", "99999999999999999999"},
	"serve refill-lease":     {"10", "0", "-10s", "10x"},
	"serve refill-scan":      {"2", "0ms", "-2s", "often"},
	"serve GOGC":             {"lots", "-1", "OFF", "1.5", "2147483648"},

	"upstream-sim addr":       {"nowhere", ":65536"},
	"upstream-sim digits":     {"x", "0", "33", "-1", "20.0"},
	"upstream-sim latency":    {"50", "-1ms", "slow"},
	"upstream-sim fail-rate":  {"often", "1.5", "-0.1", "NaN", "50%"},
	"upstream-sim lose-rate":  {"seldom", "2", "-1", "Inf"},
	"upstream-sim seed":       {"x", "-1", "18446744073709551616", "1.0"},
	"upstream-sim log-level":  {"loud"},
	"upstream-sim log-format": {"yaml"},
	"upstream-sim GOGC":       {"lots"},
}

// TestMalformedSettingsRefused gives every setting that takes a form values not
// of it, by its flag and by its variable: each must be refused, naming the flag
// or variable, the value and the form wanted, as a configuration error (exit
// status 1) rather than a usage error.
func TestMalformedSettingsRefused(t *testing.T) {
	known := map[string]bool{}
	for _, cmd := range commands() {
		for _, s := range cmd.settings {
			known[cmd.name+" "+s.key()] = true
			if s.free {
				continue
			}
			values := malformed[cmd.name+" "+s.key()]
			if len(values) == 0 {
				t.Errorf("%s %s: no malformed value in the test's table", cmd.name, s.name())
			}
			for _, v := range values {
				if s.flag != "" {
					t.Run(cmd.name+"/--"+s.flag+"="+v, func(t *testing.T) {
						err := cmd.readWith(t, io.Discard, []string{"--" + s.flag + "=" + v})
						wantRefusal(t, err, "--"+s.flag+" "+quote(v)+": want "+s.form)
					})
				}
				if s.env != "" {
					t.Run(cmd.name+"/"+s.env+"="+v, func(t *testing.T) {
						err := cmd.readWith(t, io.Discard, nil, s.env+"="+v)
						wantRefusal(t, err, s.env+"="+quote(v)+": want "+s.form)
					})
				}
			}
		}
	}
	for key := range malformed {
		if !known[key] {
			t.Errorf("the test's table holds %q, which is no setting", key)
		}
	}
}

func quote(s string) string { return `"` + s + `"` }

// wantRefusal fails t unless err is a configuration error that says want.
func wantRefusal(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("accepted; want %q", want)
	case errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp):
		t.Errorf("got %v, a usage error; want %q", err, want)
	case !strings.Contains(err.Error(), want):
		t.Errorf("got %q; want %q", err, want)
	}
}

func TestWellFormedSettingsRead(t *testing.T) {
	serve := commands()[0]
	tests := []struct {
		name string
		args []string
		vars []string
		want func(c Config) bool
	}{
		{"defaults", nil, nil, func(c Config) bool {
			return c.Addr == "127.0.0.1:8080" && c.LeaseMax == 5000 && c.RequestTimeout == 5*time.Second &&
				c.ShutdownTimeout == 30*time.Second && c.RefillLease == 10*time.Second && c.RefillScan == 2*time.Second &&
				!c.Insecure && c.LogFormat == "text" && c.GCPercent == defaultGCPercent
		}},
		{"the variable", nil, []string{"NUMBERD_LEASE_MAX=7", "NUMBERD_INSECURE=1", "GOGC=off"}, func(c Config) bool {
			return c.LeaseMax == 7 && c.Insecure && c.GCPercent == -1
		}},
		{"the flag wins", []string{"--lease-max", "8", "--insecure=false"}, []string{"NUMBERD_LEASE_MAX=7", "NUMBERD_INSECURE=true"}, func(c Config) bool {
			return c.LeaseMax == 8 && !c.Insecure
		}},
		{"the flag wins over a malformed variable", []string{"--lease-max", "8"}, []string{"NUMBERD_LEASE_MAX=abc"}, func(c Config) bool {
			return c.LeaseMax == 8
		}},
		{"an empty variable is unset", nil, []string{"NUMBERD_LEASE_MAX=", "NUMBERD_REQUEST_TIMEOUT="}, func(c Config) bool {
			return c.LeaseMax == 5000 && c.RequestTimeout == 5*time.Second
		}},
		{"a flag alone is true", []string{"--insecure"}, nil, func(c Config) bool { return c.Insecure }},
		{"the limits", []string{"--lease-max", "9007199254740992", "--request-timeout", "1ns"}, nil, func(c Config) bool {
			return c.LeaseMax == 1<<53 && c.RequestTimeout == 1
		}},
		{"addresses", []string{"--addr", "[::1]:0"}, nil, func(c Config) bool { return c.Addr == "[::1]:0" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t, serve)
			for _, kv := range tt.vars {
				name, value, _ := strings.Cut(kv, "=")
				t.Setenv(name, value)
			}
			c, err := parseConfig("serve", tt.args)
			if err != nil || !tt.want(c) {
				t.Errorf("parseConfig(%q) with %q = %+v, %v", tt.args, tt.vars, c, err)
			}
		})
	}

	sim := commands()[1]
	clearEnv(t, sim)
	var c simConfig
	args := []string{"--digits", "32", "--seed", "18446744073709551615", "--fail-rate", "1", "--lose-rate", "0", "--latency", "0"}
	if err := c.read(flag.NewFlagSet("numberd upstream-sim", flag.ContinueOnError), args); err != nil ||
		c.Sim.Digits != 32 || c.Sim.Seed != math.MaxUint64 || c.Sim.FailRate != 1 {
		t.Errorf("upstream-sim %q = %+v, %v", args, c, err)
	}
}

// TestEveryMalformedSettingSaid: all malformed values at once are refused
// together, one error each, so a single start names them all.
func TestEveryMalformedSettingSaid(t *testing.T) {
	err := commands()[0].readWith(t, io.Discard, []string{"--refill-scan", "0"}, "NUMBERD_LEASE_MAX=abc", "NUMBERD_INSECURE=maybe")
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok || len(joined.Unwrap()) != 3 {
		t.Fatalf("got %v, want three errors", err)
	}
	for _, want := range []string{`--refill-scan "0"`, `NUMBERD_LEASE_MAX="abc"`, `NUMBERD_INSECURE="maybe"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("got %q, want it to name %s", err, want)
		}
	}
}

// TestStructuredSettingsRefused: the settings whose text has a structure of its
// own are refused at start too, naming their flag or variable, never quoting a
// password.
func TestStructuredSettingsRefused(t *testing.T) {
	dir := t.TempDir()
	file := func(yaml string) string {
		f, err := os.CreateTemp(dir, "*.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(yaml); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return f.Name()
	}
	const dsn = "app:secret@tcp(db:3306)/numberd"
	tests := []struct {
		name string
		args []string
		vars []string
		want string
	}{
		{"redis database", []string{"--redis", "redis://:secret@h:1/abc", "--mysql", dsn}, nil, `--redis: database "abc": want a whole number`},
		{"redis database by variable", []string{"--mysql", dsn}, []string{"NUMBERD_REDIS_URL=redis://:secret@h:1/-1"}, `NUMBERD_REDIS_URL: database "-1"`},
		{"sentinel database", []string{"--redis", "redis-sentinel://h:1/m?db=x", "--mysql", dsn}, nil, `--redis: database "x"`},
		{"mysql timeout without a unit", []string{"--redis", "redis://h:1/0"}, []string{"NUMBERD_MYSQL_DSN=" + dsn + "?readTimeout=500"}, "NUMBERD_MYSQL_DSN: does not parse"},
		{"mysql negative timeout", []string{"--redis", "redis://h:1/0", "--mysql", dsn + "?writeTimeout=-1s"}, nil, "--mysql: timeout, readTimeout and writeTimeout must not be negative"},
		{"upstream timeout without a unit", []string{"--config", file("upstreams:\n  leqi: {url: 'http://127.0.0.1:9', timeout: 500}\n")}, nil,
			`upstreams.leqi.timeout "500": want a duration with a unit`},
		{"negative upstream timeout", []string{"--config", file("upstreams:\n  leqi: {url: 'http://127.0.0.1:9', timeout: -1s}\n")}, nil,
			`upstreams.leqi.timeout "-1s": want a duration with a unit`},
		{"upstream token", []string{"--config", file("upstreams:\n  leqi: {url: 'http://127.0.0.1:9', token: 'a b'}\n")}, nil, "upstream leqi: "},
		{"upstream-sim first", nil, []string{"NUMBERD_SIM_DIGITS=8", "NUMBERD_SIM_FIRST=1"}, `NUMBERD_SIM_FIRST="1": want a number of 8 digits`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := commands()[0]
			if strings.HasPrefix(tt.name, "upstream-sim") {
				cmd = commands()[1]
			}
			err := cmd.readWith(t, io.Discard, tt.args, tt.vars...)
			wantRefusal(t, err, tt.want)
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
	// An upstream's timeout left out or empty is the adapter's default.
	c, err := parseConfig("serve", []string{"--config", file("upstreams:\n  a: {url: 'http://h:1', timeout: 2s}\n  b: {url: 'http://h:1', timeout: }\n  c: {url: 'http://h:1'}\n")})
	if err != nil || c.Upstreams["a"].Timeout != 2*time.Second || c.Upstreams["b"].Timeout != 0 || c.Upstreams["c"].Timeout != 0 {
		t.Errorf("upstreams %+v, %v; want timeouts 2s, 0, 0", c.Upstreams, err)
	}
}

// TestRunRefusesMalformedSettings: a malformed setting exits 1 before anything
// starts: no data directory made. An unknown flag or an argument stays a usage
// error, exit 2.
func TestRunRefusesMalformedSettings(t *testing.T) {
	clearEnv(t, commands()[0])
	clearEnv(t, commands()[1])
	dir := filepath.Join(t.TempDir(), "data")
	tests := []struct {
		args []string
		want int
	}{
		{[]string{"serve", "--data-dir", dir, "--lease-max", "abc"}, 1},
		{[]string{"migrate", "--data-dir", dir, "--request-timeout", "500"}, 1},
		{[]string{"--data-dir", dir, "--insecure=maybe"}, 1},
		{[]string{"upstream-sim", "--addr", "127.0.0.1:0", "--digits", "0"}, 1},
		{[]string{"serve", "--data-dir", dir, "--nope"}, 2},
		{[]string{"upstream-sim", "now"}, 2},
	}
	for _, tt := range tests {
		if got := run(tt.args); got != tt.want {
			t.Errorf("run(%q) = %d, want %d", tt.args, got, tt.want)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the data directory was made (%v): something started", err)
	}
}

// TestHelpListsEverySetting: -h names every flag, with its variable, and every
// variable without a flag.
func TestHelpListsEverySetting(t *testing.T) {
	for _, cmd := range commands() {
		var out bytes.Buffer
		if err := cmd.readWith(t, &out, []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("%s -h: %v, want flag.ErrHelp", cmd.name, err)
		}
		for _, s := range cmd.settings {
			want := s.env
			if s.flag != "" {
				want = "--" + s.flag
			}
			if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), s.usage) {
				t.Errorf("%s -h does not list %s (%s):\n%s", cmd.name, want, s.usage, out.String())
			}
		}
	}
}
