package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// FileConfig is numberd's YAML configuration file (--config): tokens and upstreams.
type FileConfig struct {
	Tokens    []TokenConfig             `yaml:"tokens,omitempty"`
	Upstreams map[string]UpstreamConfig `yaml:"upstreams,omitempty"`
}

// TokenConfig is one entry of the file's tokens list.
type TokenConfig struct {
	Token string   `yaml:"token"`
	Role  string   `yaml:"role"`
	Pools []string `yaml:"pools,omitempty"`
}

// UpstreamConfig is one upstream a pool may refill from.
type UpstreamConfig struct {
	URL   string `yaml:"url"`
	Token string `yaml:"token,omitempty"`
	// Timeout bounds one call; zero leaves numberd's default.
	Timeout time.Duration `yaml:"timeout,omitempty"`
}

// WriteConfig writes cfg as a YAML file in a temporary directory of tb and returns
// its path, for --config. A failure fails tb.
func WriteConfig(tb testing.TB, cfg FileConfig) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "numberd.yaml")
	if err := WriteConfigFile(path, cfg); err != nil {
		tb.Fatal(err)
	}
	return path
}

// WriteConfigFile is WriteConfig outside a test, for a TestMain: it writes cfg as a
// YAML file at path.
func WriteConfigFile(path string, cfg FileConfig) error {
	data, err := yaml.Marshal(configYAML(cfg))
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// configYAML is cfg with durations written as Go duration strings ("5s"), the form
// numberd reads; yaml.v3 would write them as integers of nanoseconds.
func configYAML(cfg FileConfig) any {
	type upstream struct {
		URL     string `yaml:"url"`
		Token   string `yaml:"token,omitempty"`
		Timeout string `yaml:"timeout,omitempty"`
	}
	out := struct {
		Tokens    []TokenConfig       `yaml:"tokens,omitempty"`
		Upstreams map[string]upstream `yaml:"upstreams,omitempty"`
	}{Tokens: cfg.Tokens}
	if len(cfg.Upstreams) > 0 {
		out.Upstreams = map[string]upstream{}
		for name, u := range cfg.Upstreams {
			up := upstream{URL: u.URL, Token: u.Token}
			if u.Timeout > 0 {
				up.Timeout = u.Timeout.String()
			}
			out.Upstreams[name] = up
		}
	}
	return out
}
