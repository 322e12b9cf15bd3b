package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/numberd/numberd/internal/httpapi"
	"github.com/numberd/numberd/internal/refill"
)

// Config is numberd's configuration: defaults, then environment, then flags, then
// the YAML file the --config flag names.
type Config struct {
	Addr            string
	DataDir         string
	RedisURL        string
	MySQLDSN        string
	ConfigFile      string
	Insecure        bool
	LogLevel        string
	LogFormat       string
	RequestTimeout  time.Duration
	ShutdownTimeout time.Duration
	RefillLease     time.Duration
	RefillScan      time.Duration
	LeaseMax        int64

	// From the file (and NUMBERD_ADMIN_TOKEN).
	Tokens    []httpapi.Token
	Upstreams map[string]Upstream
}

// Upstream is a configured segment source.
type Upstream struct {
	URL     string        `yaml:"url"`
	Token   string        `yaml:"token"`
	Timeout time.Duration `yaml:"timeout"`
}

// fileConfig is the YAML file's shape.
type fileConfig struct {
	Tokens []struct {
		Token string   `yaml:"token"`
		Role  string   `yaml:"role"`
		Pools []string `yaml:"pools"`
	} `yaml:"tokens"`
	Upstreams map[string]Upstream `yaml:"upstreams"`
}

func envOr(name, fallback string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return fallback
}

func envBool(name string) bool {
	v, _ := strconv.ParseBool(os.Getenv(name))
	return v
}

func envInt(name string, fallback int64) int64 {
	if n, err := strconv.ParseInt(os.Getenv(name), 10, 64); err == nil {
		return n
	}
	return fallback
}

func envDuration(name string, fallback time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return d
	}
	return fallback
}

// bindFlags registers the flags shared by serve and migrate on fs, with defaults
// taken from the environment.
func (c *Config) bindFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", envOr("NUMBERD_ADDR", "127.0.0.1:8080"), "listen address (NUMBERD_ADDR)")
	fs.StringVar(&c.DataDir, "data-dir", envOr("NUMBERD_DATA_DIR", "./numberd-data"), "embedded mode's directory (NUMBERD_DATA_DIR)")
	fs.StringVar(&c.RedisURL, "redis", envOr("NUMBERD_REDIS_URL", ""), "Redis URL; set: distributed mode (NUMBERD_REDIS_URL)")
	fs.StringVar(&c.MySQLDSN, "mysql", envOr("NUMBERD_MYSQL_DSN", ""), "MySQL DSN, required with --redis (NUMBERD_MYSQL_DSN)")
	fs.StringVar(&c.ConfigFile, "config", envOr("NUMBERD_CONFIG", ""), "YAML file of tokens and upstreams (NUMBERD_CONFIG)")
	fs.BoolVar(&c.Insecure, "insecure", envBool("NUMBERD_INSECURE"), "allow a non-loopback address without tokens (NUMBERD_INSECURE=1)")
	fs.StringVar(&c.LogLevel, "log-level", envOr("NUMBERD_LOG_LEVEL", "info"), "debug, info, warn or error (NUMBERD_LOG_LEVEL)")
	fs.StringVar(&c.LogFormat, "log-format", envOr("NUMBERD_LOG_FORMAT", "text"), "text or json (NUMBERD_LOG_FORMAT)")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", envDuration("NUMBERD_REQUEST_TIMEOUT", 5*time.Second), "longest a request waits on a store (NUMBERD_REQUEST_TIMEOUT)")
	fs.Int64Var(&c.LeaseMax, "lease-max", envInt("NUMBERD_LEASE_MAX", 5000), "most numbers a pool reserves ahead of need: what a crash or a lost Redis may strand (NUMBERD_LEASE_MAX)")
	fs.DurationVar(&c.RefillLease, "refill-lease", envDuration("NUMBERD_REFILL_LEASE", 10*time.Second), "the refill lock's lease: a holder that stops is replaced after it (NUMBERD_REFILL_LEASE)")
	fs.DurationVar(&c.RefillScan, "refill-scan", envDuration("NUMBERD_REFILL_SCAN", 2*time.Second), "how often every pool with an upstream is checked for need (NUMBERD_REFILL_SCAN)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", envDuration("NUMBERD_SHUTDOWN_TIMEOUT", 30*time.Second), "longest SIGTERM waits for requests in flight (NUMBERD_SHUTDOWN_TIMEOUT)")
}

// load reads the config file, if any, and NUMBERD_ADMIN_TOKEN.
func (c *Config) load() error {
	if tok := os.Getenv("NUMBERD_ADMIN_TOKEN"); tok != "" {
		c.Tokens = append(c.Tokens, httpapi.Token{Token: tok, Role: httpapi.RoleAdmin})
	}
	if c.ConfigFile == "" {
		return nil
	}
	data, err := os.ReadFile(c.ConfigFile)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var f fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// An empty file configures nothing.
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", c.ConfigFile, err)
	}
	for _, t := range f.Tokens {
		c.Tokens = append(c.Tokens, httpapi.Token{Token: t.Token, Role: t.Role, Pools: t.Pools})
	}
	c.Upstreams = f.Upstreams
	return nil
}

// Validate checks the configuration as a whole.
func (c *Config) Validate() error {
	if (c.RedisURL == "") != (c.MySQLDSN == "") {
		return errors.New("distributed mode needs both --redis and --mysql")
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("--log-format must be text or json, not %q", c.LogFormat)
	}
	if c.LeaseMax < 1 {
		return fmt.Errorf("--lease-max must be at least 1, not %d", c.LeaseMax)
	}
	if c.RequestTimeout <= 0 || c.ShutdownTimeout <= 0 || c.RefillLease <= 0 || c.RefillScan <= 0 {
		return errors.New("--request-timeout, --shutdown-timeout, --refill-lease and --refill-scan must be positive")
	}
	for name, u := range c.Upstreams {
		parsed, err := url.Parse(u.URL)
		if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
			return fmt.Errorf("upstream %s: url must be http(s)://host[:port][/path]", name)
		}
		if u.Timeout < 0 {
			return fmt.Errorf("upstream %s: timeout must not be negative", name)
		}
	}
	if len(c.Tokens) == 0 && !c.Insecure && !loopback(c.Addr) {
		return fmt.Errorf("refusing to listen on %s without tokens: anyone could take numbers. "+
			"Configure tokens (--config with a tokens list, or NUMBERD_ADMIN_TOKEN), listen on a loopback address, "+
			"or pass --insecure (NUMBERD_INSECURE=1)", c.Addr)
	}
	return nil
}

// loopback reports whether addr's host can only be reached from this machine.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("--log-level must be debug, info, warn or error, not %q", s)
	}
	return l, nil
}

// storeTimeout is the longest a request may wait on MySQL (or SQLite): nine
// tenths of the request timeout, the rest left for the Redis calls around it and
// the answer, so that a store that hangs is answered with 503 before the request
// timeout rather than just after it.
func (c *Config) storeTimeout() time.Duration { return c.RequestTimeout * 9 / 10 }

// upstreamNames is the set of configured upstream names.
func (c *Config) upstreamNames() map[string]bool {
	names := map[string]bool{}
	for name := range c.Upstreams {
		names[name] = true
	}
	return names
}

// upstreams returns the configured upstreams' adapters.
func (c *Config) upstreams() (map[string]refill.Upstream, error) {
	out := map[string]refill.Upstream{}
	for name, u := range c.Upstreams {
		timeout := u.Timeout
		if timeout == 0 {
			timeout = 5 * time.Second
		}
		up, err := refill.NewHTTPUpstream(u.URL, u.Token, timeout)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", name, err)
		}
		out[name] = up
	}
	return out, nil
}
