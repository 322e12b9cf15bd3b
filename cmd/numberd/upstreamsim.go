package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/numberd/numberd/internal/segment"
	"github.com/numberd/numberd/internal/upstreamsim"
)

// simShutdownTimeout bounds the wait for answers in flight at SIGTERM; calls still
// waiting out their latency are answered 503 at once.
const simShutdownTimeout = 10 * time.Second

// simConfig is the configuration of `numberd upstream-sim`.
type simConfig struct {
	Addr      string
	Sim       upstreamsim.Options
	LogLevel  slog.Level
	LogFormat string
	GCPercent int
}

// settings are upstream-sim's settings, read into c.
func (c *simConfig) settings() []setting {
	s := []setting{
		{flag: "addr", env: "NUMBERD_SIM_ADDR", usage: "listen address", kind: address(&c.Addr, "127.0.0.1:9090")},
		{flag: "digits", env: "NUMBERD_SIM_DIGITS", usage: "width of the numbers granted", kind: whole(&c.Sim.Digits, 20, 1, segment.MaxDigits)},
		{flag: "first", env: "NUMBERD_SIM_FIRST", usage: "first number granted, of --digits digits (default 1, zero-padded)", kind: text(&c.Sim.First, "")},
		{flag: "latency", env: "NUMBERD_SIM_LATENCY", usage: "time every call waits before its answer", kind: duration(&c.Sim.Latency, 0, 0)},
		{flag: "fail-rate", env: "NUMBERD_SIM_FAIL_RATE", usage: "probability of answering 503 and granting nothing", kind: probability(&c.Sim.FailRate)},
		{flag: "lose-rate", env: "NUMBERD_SIM_LOSE_RATE", usage: "probability of granting but answering 503 (a lost reply)", kind: probability(&c.Sim.LoseRate)},
		{flag: "token", env: "NUMBERD_SIM_TOKEN", usage: "bearer token callers must send (default none: open)", kind: text(&c.Sim.Token, "")},
		{flag: "seed", env: "NUMBERD_SIM_SEED", usage: "seed of the fail and lose draws", kind: whole(&c.Sim.Seed, 0, 0, math.MaxUint64)},
	}
	s = append(s, logSettings(&c.LogLevel, &c.LogFormat, "the log's level (debug: a line per grant)")...)
	return append(s, gcSetting(&c.GCPercent))
}

// read reads c from args, parsed as fs's flags, and from the environment. Its
// errors are readSettings's, and that of a --first not of --digits digits.
func (c *simConfig) read(fs *flag.FlagSet, args []string) error {
	head := "usage: " + fs.Name() + " [flags]\n" +
		"Serves the upstream protocol (POST /segments, GET /stats) for tests and demos."
	from, err := readSettings(fs, args, head, c.settings())
	if err != nil {
		return err
	}
	if c.Sim.First == "" {
		return nil
	}
	if _, err := segment.ParseNumber(c.Sim.First, c.Sim.Digits); err != nil {
		return refuse(from["first"], c.Sim.First, fmt.Sprintf("a number of %d digits, as --digits says", c.Sim.Digits))
	}
	return nil
}

// upstreamSim runs `numberd upstream-sim` until SIGTERM or SIGINT.
func upstreamSim(args []string) error {
	var cfg simConfig
	if err := cfg.read(flag.NewFlagSet("numberd upstream-sim", flag.ContinueOnError), args); err != nil {
		return err
	}
	debug.SetGCPercent(cfg.GCPercent)
	logger := newLogger(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	cfg.Sim.Logger = logger
	sim, err := upstreamsim.New(cfg.Sim)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	// Cancelled at shutdown, so that calls waiting out their latency end at once.
	base, cancelBase := context.WithCancel(context.Background())
	defer cancelBase()
	srv := &http.Server{
		Handler:           sim.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	attrs := []any{"addr", ln.Addr().String(), "digits", cfg.Sim.Digits}
	if cfg.Sim.First != "" {
		attrs = append(attrs, "first", cfg.Sim.First)
	}
	attrs = append(attrs, "latency", cfg.Sim.Latency, "fail_rate", cfg.Sim.FailRate, "lose_rate", cfg.Sim.LoseRate,
		"seed", cfg.Sim.Seed, "token_required", cfg.Sim.Token != "")
	logger.Info("listening", attrs...)

	var serveErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case serveErr = <-errc:
	}
	stop()
	cancelBase()
	shutCtx, cancel := context.WithTimeout(context.Background(), simShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		return errors.Join(serveErr, fmt.Errorf("draining requests: %w", err))
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	st := sim.Stats()
	logger.Info("stopped", "applies", st.Applies, "granted", st.Granted, "numbers", st.Numbers)
	return nil
}
