package main

import (
	"bytes"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/numberd/numberd/internal/httpapi"
	"github.com/numberd/numberd/internal/refill"
	"github.com/numberd/numberd/internal/segment"
)

// Config is numberd's configuration: each setting's default, then its
// environment variable, then its flag (settings.go), then the YAML file that
// --config names; Validate checks what depends on more than one value.
type Config struct {
	Addr            string
	DataDir         string
	RedisURL        string
	MySQLDSN        string
	ConfigFile      string
	AdminToken      string
	Insecure        bool
	LogLevel        slog.Level
	LogFormat       string
	RequestTimeout  time.Duration
	ShutdownTimeout time.Duration
	RefillLease     time.Duration
	RefillScan      time.Duration
	LeaseMax        int64
	GCPercent       int

	// From the file (and NUMBERD_ADMIN_TOKEN).
	Tokens    []httpapi.Token
	Upstreams map[string]Upstream

	// from names the flag or variable each setting came from, by setting.key,
	// for the errors Validate finds.
	from map[string]string
}

// Upstream is a configured segment source.
type Upstream struct {
	URL     string
	Token   string
	Timeout time.Duration // zero: refill.DefaultTimeout
}

// fileConfig is the YAML file's shape. A timeout is read as text, so that a
// malformed one is refused as a malformed flag is.
type fileConfig struct {
	Tokens []struct {
		Token string   `yaml:"token"`
		Role  string   `yaml:"role"`
		Pools []string `yaml:"pools"`
	} `yaml:"tokens"`
	Upstreams map[string]struct {
		URL     string `yaml:"url"`
		Token   string `yaml:"token"`
		Timeout string `yaml:"timeout"`
	} `yaml:"upstreams"`
}

// settings are the settings of serve and migrate, read into c.
func (c *Config) settings() []setting {
	s := []setting{
		{flag: "addr", env: "NUMBERD_ADDR", usage: "listen address", kind: address(&c.Addr, "127.0.0.1:8080")},
		{flag: "data-dir", env: "NUMBERD_DATA_DIR", usage: "embedded mode's directory (SQLite file); one process per directory", kind: text(&c.DataDir, "./numberd-data")},
		{flag: "redis", env: "NUMBERD_REDIS_URL", usage: "Redis URL (redis://, redis-sentinel://, redis-cluster://); set: distributed mode", kind: text(&c.RedisURL, "")},
		{flag: "mysql", env: "NUMBERD_MYSQL_DSN", usage: "MySQL DSN (user:password@tcp(host:port)/database), required with --redis", kind: text(&c.MySQLDSN, "")},
		{flag: "config", env: "NUMBERD_CONFIG", usage: "YAML file of tokens and upstreams", kind: text(&c.ConfigFile, "")},
		{flag: "insecure", env: "NUMBERD_INSECURE", usage: "allow a non-loopback address without tokens", kind: boolean(&c.Insecure)},
	}
	s = append(s, logSettings(&c.LogLevel, &c.LogFormat, "the log's level")...)
	return append(s,
		setting{flag: "request-timeout", env: "NUMBERD_REQUEST_TIMEOUT", usage: "longest a request waits on a store before 503 unavailable",
			kind: duration(&c.RequestTimeout, 5*time.Second, time.Nanosecond)},
		setting{flag: "shutdown-timeout", env: "NUMBERD_SHUTDOWN_TIMEOUT", usage: "longest SIGTERM waits for requests in flight",
			kind: duration(&c.ShutdownTimeout, 30*time.Second, time.Nanosecond)},
		setting{flag: "lease-max", env: "NUMBERD_LEASE_MAX", usage: "most numbers a pool reserves ahead of need: what a crash or a lost Redis may strand",
			// A lease lies within one segment, which holds segment.MaxSize numbers at most.
			kind: whole(&c.LeaseMax, 5000, 1, segment.MaxSize)},
		setting{flag: "refill-lease", env: "NUMBERD_REFILL_LEASE", usage: "the refill lock's lease: a holder that stops is replaced after it",
			kind: duration(&c.RefillLease, 10*time.Second, time.Nanosecond)},
		setting{flag: "refill-scan", env: "NUMBERD_REFILL_SCAN", usage: "how often every pool with an upstream is checked for need",
			kind: duration(&c.RefillScan, 2*time.Second, time.Nanosecond)},
		setting{env: "NUMBERD_ADMIN_TOKEN", usage: "one admin token, besides those of the --config file", kind: text(&c.AdminToken, "")},
		gcSetting(&c.GCPercent),
	)
}

// read reads c from args, parsed as fs's flags, from the environment and from the
// file --config names, and validates it. Its errors are those of readSettings,
// load and Validate.
func (c *Config) read(fs *flag.FlagSet, args []string) error {
	head := "usage: " + fs.Name() + " [flags]"
	from, err := readSettings(fs, args, head, c.settings())
	if err != nil {
		return err
	}
	c.from = from
	if err := c.load(); err != nil {
		return err
	}
	return c.Validate()
}

// load reads NUMBERD_ADMIN_TOKEN's token and the config file, if any.
func (c *Config) load() error {
	if c.AdminToken != "" {
		c.Tokens = append(c.Tokens, httpapi.Token{Token: c.AdminToken, Role: httpapi.RoleAdmin})
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
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(f.Upstreams)) {
		u := f.Upstreams[name]
		up := Upstream{URL: u.URL, Token: u.Token}
		if k := duration(&up.Timeout, 0, 0); u.Timeout != "" && !k.set(u.Timeout) {
			field := fmt.Sprintf("config %s: upstreams.%s.timeout", c.ConfigFile, name)
			errs = append(errs, refuse(field, u.Timeout, k.form+" (0: "+refill.DefaultTimeout.String()+")"))
		}
		if c.Upstreams == nil {
			c.Upstreams = map[string]Upstream{}
		}
		c.Upstreams[name] = up
	}
	return errors.Join(errs...)
}

// Validate checks what depends on more than one setting or on the structure of
// one: the mode, the Redis URL, the MySQL DSN, the upstreams, and tokens where
// the address is not loopback. Settings of one value are checked as they are
// read.
func (c *Config) Validate() error {
	if (c.RedisURL == "") != (c.MySQLDSN == "") {
		return errors.New("distributed mode needs both --redis and --mysql")
	}
	if c.RedisURL != "" {
		if _, err := redisOptions(c.RedisURL); err != nil {
			return fmt.Errorf("%s: %w", c.nameOf("redis"), err)
		}
	}
	if c.MySQLDSN != "" {
		if err := checkMySQLDSN(c.MySQLDSN); err != nil {
			return fmt.Errorf("%s: %w", c.nameOf("mysql"), err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Upstreams)) {
		// Checked here first because the adapter's error quotes the URL, which may
		// hold a password.
		parsed, err := url.Parse(c.Upstreams[name].URL)
		if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
			return fmt.Errorf("upstream %s: url must be http(s)://host[:port][/path]", name)
		}
	}
	if _, err := c.upstreams(); err != nil {
		return err
	}
	if len(c.Tokens) == 0 && !c.Insecure && !loopback(c.Addr) {
		return fmt.Errorf("refusing to listen on %s without tokens: anyone could take numbers. "+
			"Configure tokens (--config with a tokens list, or NUMBERD_ADMIN_TOKEN), listen on a loopback address, "+
			"or pass --insecure (NUMBERD_INSECURE=1)", c.Addr)
	}
	return nil
}

// nameOf is the flag or variable the setting of key came from.
func (c *Config) nameOf(key string) string { return cmp.Or(c.from[key], "--"+key) }

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
		up, err := refill.NewHTTPUpstream(u.URL, u.Token, u.Timeout)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", name, err)
		}
		out[name] = up
	}
	return out, nil
}
