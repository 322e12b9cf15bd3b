package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// SimConfig says how to start `numberd upstream-sim`.
type SimConfig struct {
	// Name labels the simulator in logs; "sim" if empty.
	Name string
	// Addr is --addr; empty means 127.0.0.1:0 (a free port, kept across restarts).
	Addr string
	// Args are more arguments: --digits, --first, --latency, --fail-rate,
	// --lose-rate, --token, --seed.
	Args []string
	// Env are more "NAME=value" variables.
	Env []string
}

// Sim is an `numberd upstream-sim` process, run from the same binary as the
// nodes. It can be killed and restarted on its address like a node; a restart
// forgets every ywlsh it granted, as the simulator keeps nothing on disk.
type Sim struct {
	*Node
}

// SimStats is the simulator's GET /stats answer.
type SimStats struct {
	Applies int64 `json:"applies"`
	Granted int64 `json:"granted"`
	Numbers int64 `json:"numbers"`
}

// StartSim starts an upstream simulator and waits until it listens. It is killed
// when tb ends; if tb failed, its last log lines are logged.
func StartSim(tb testing.TB, cfg SimConfig) *Sim {
	tb.Helper()
	if cfg.Name == "" {
		cfg.Name = "sim"
	}
	args := cfg.Args
	n := newNode(tb, NodeConfig{Name: cfg.Name, Addr: cfg.Addr, Env: cfg.Env}, func(addr string) []string {
		return append([]string{"upstream-sim", "--addr", addr}, args...)
	})
	if err := n.start(); err != nil {
		tb.Fatalf("starting %s: %v", cfg.Name, err)
	}
	return &Sim{Node: n}
}

// Stats asks the simulator for GET /stats.
func (s *Sim) Stats(ctx context.Context) (SimStats, error) {
	var st SimStats
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+"/stats", nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%s /stats: %s", s.Name(), resp.Status)
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

// MustStats is Stats, failing tb on an error.
func (s *Sim) MustStats(tb testing.TB) SimStats {
	tb.Helper()
	st, err := s.Stats(context.Background())
	if err != nil {
		tb.Fatalf("%s stats: %v", s.Name(), err)
	}
	return st
}
