// Command numberd hands out invoice numbers: no number is ever issued twice.
//
//	numberd [serve] [flags]   run the server (the default)
//	numberd migrate [flags]   apply the store's schema migrations and exit
//	numberd upstream-sim [flags]   serve the upstream protocol (a simulated tax platform)
//
// Flags and their environment variables are listed by `numberd serve -h`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

func main() { os.Exit(run(os.Args[1:])) }

// run executes a subcommand and returns the process's exit status.
func run(args []string) int {
	cmd := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(args)
	case "migrate":
		err = migrate(args)
	case "upstream-sim":
		err = upstreamSim(args)
	case "help":
		fmt.Fprintln(os.Stdout, "usage: numberd [serve|migrate|upstream-sim] [flags]; numberd serve -h lists the flags")
		return 0
	default:
		fmt.Fprintf(os.Stderr, "numberd: unknown command %q (serve, migrate, upstream-sim)\n", cmd)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		// A joined error says one malformed setting each: a line each.
		errs := []error{err}
		if joined, ok := err.(interface{ Unwrap() []error }); ok {
			errs = joined.Unwrap()
		}
		for _, e := range errs {
			fmt.Fprintf(os.Stderr, "numberd: %v\n", e)
		}
		return 1
	}
}

var errUsage = errors.New("usage")

// parseConfig reads the configuration of the command name (serve or migrate) from
// args, the environment and the config file.
func parseConfig(name string, args []string) (Config, error) {
	var c Config
	err := c.read(flag.NewFlagSet("numberd "+name, flag.ContinueOnError), args)
	return c, err
}

func serve(args []string) error {
	cfg, err := parseConfig("serve", args)
	if err != nil {
		return err
	}
	debug.SetGCPercent(cfg.GCPercent)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	m := NewMain(cfg)
	if err := m.Open(ctx); err != nil {
		return err
	}
	var serveErr error
	select {
	case <-ctx.Done():
		m.Logger.Info("shutting down: draining requests in flight", "timeout", cfg.ShutdownTimeout)
	case serveErr = <-m.Err():
	}
	stop()
	closeCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := m.Close(closeCtx); err != nil {
		return errors.Join(serveErr, err)
	}
	if serveErr == nil {
		m.Logger.Info("stopped")
	}
	return serveErr
}

func migrate(args []string) error {
	cfg, err := parseConfig("migrate", args)
	if err != nil {
		return err
	}
	debug.SetGCPercent(cfg.GCPercent)
	m := NewMain(cfg)
	// No request timeout here: migrating is all this command does, and a
	// schema change of a large table may take long.
	st, err := m.openStore(context.Background(), cfg.MySQLDSN)
	if err != nil {
		return err
	}
	m.Logger.Info("schema up to date", "store", st.Name())
	return st.Close()
}
