package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/numberd/numberd/internal/upstreamsim"
)

// simShutdownTimeout bounds the wait for answers in flight at SIGTERM; calls still
// waiting out their latency are answered 503 at once.
const simShutdownTimeout = 10 * time.Second

// simEnv maps each upstream-sim flag to its environment variable; a flag given on
// the command line wins over its variable.
var simEnv = map[string]string{
	"addr":       "NUMBERD_SIM_ADDR",
	"digits":     "NUMBERD_SIM_DIGITS",
	"first":      "NUMBERD_SIM_FIRST",
	"latency":    "NUMBERD_SIM_LATENCY",
	"fail-rate":  "NUMBERD_SIM_FAIL_RATE",
	"lose-rate":  "NUMBERD_SIM_LOSE_RATE",
	"token":      "NUMBERD_SIM_TOKEN",
	"seed":       "NUMBERD_SIM_SEED",
	"log-level":  "NUMBERD_LOG_LEVEL",
	"log-format": "NUMBERD_LOG_FORMAT",
}

// simConfig is the configuration of `numberd upstream-sim`.
type simConfig struct {
	Addr      string
	Sim       upstreamsim.Options
	LogLevel  slog.Level
	LogFormat string
}

// parseSimConfig reads upstream-sim's flags and environment. On a bad flag, value
// or combination it prints why to stderr and returns errUsage.
func parseSimConfig(args []string) (simConfig, error) {
	var c simConfig
	fs := flag.NewFlagSet("numberd upstream-sim", flag.ContinueOnError)
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:9090", "listen address")
	fs.IntVar(&c.Sim.Digits, "digits", 20, "width of the numbers granted, 1..32")
	fs.StringVar(&c.Sim.First, "first", "", "first number granted, of --digits digits (default 1, zero-padded)")
	fs.DurationVar(&c.Sim.Latency, "latency", 0, "time every call waits before its answer")
	fs.Float64Var(&c.Sim.FailRate, "fail-rate", 0, "probability 0..1 of answering 503 and granting nothing")
	fs.Float64Var(&c.Sim.LoseRate, "lose-rate", 0, "probability 0..1 of granting but answering 503 (a lost reply)")
	fs.StringVar(&c.Sim.Token, "token", "", "bearer token callers must send (default none: open)")
	fs.Uint64Var(&c.Sim.Seed, "seed", 0, "seed of the fail and lose draws")
	fs.TextVar(&c.LogLevel, "log-level", slog.LevelInfo, "debug (one line per grant), info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "text or json")
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintln(out, "usage: numberd upstream-sim [flags]")
		fmt.Fprintln(out, "Serves the upstream protocol (POST /segments, GET /stats) for tests and demos.")
		fmt.Fprintln(out, "Each flag has an environment variable; a flag given wins.")
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(out, "  --%s (%s)\n    \t%s", f.Name, simEnv[f.Name], f.Usage)
			if f.DefValue != "" && f.DefValue != "0" {
				fmt.Fprintf(out, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(out)
		})
	}
	fail := func(format string, a ...any) (simConfig, error) {
		fmt.Fprintf(os.Stderr, "numberd upstream-sim: "+format+"\n", a...)
		return c, errUsage
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, errUsage // the flag package said why
	}
	if fs.NArg() > 0 {
		return fail("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		v, ok := os.LookupEnv(simEnv[f.Name])
		if !ok || given[f.Name] || envErr != nil {
			return
		}
		if err := f.Value.Set(v); err != nil {
			envErr = fmt.Errorf("%s=%q: %v", simEnv[f.Name], v, err)
		}
	})
	if envErr != nil {
		return fail("%v", envErr)
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fail("--addr %q must be host:port: %v", c.Addr, err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fail("--log-format must be text or json, not %q", c.LogFormat)
	}
	if _, err := upstreamsim.New(c.Sim); err != nil {
		return fail("%v", err)
	}
	return c, nil
}

// upstreamSim runs `numberd upstream-sim` until SIGTERM or SIGINT.
func upstreamSim(args []string) error {
	cfg, err := parseSimConfig(args)
	if err != nil {
		return err
	}
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	logger := slog.New(h)
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
