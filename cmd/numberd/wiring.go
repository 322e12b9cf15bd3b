package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/alloc/distributed"
	"github.com/numberd/numberd/internal/alloc/embedded"
	"github.com/numberd/numberd/internal/httpapi"
	"github.com/numberd/numberd/internal/metrics"
	"github.com/numberd/numberd/internal/refill"
	"github.com/numberd/numberd/internal/store"
)

// Main wires numberd together: store, engine, HTTP server.
type Main struct {
	Config Config
	Logger *slog.Logger

	metrics *metrics.Metrics
	store   *store.Store
	redis   redis.UniversalClient
	engine  numberd.Engine
	refill  *refill.Worker
	http    *http.Server
	ln      net.Listener
	errc    chan error
}

// NewMain returns a Main for cfg, logging to stderr as cfg says.
func NewMain(cfg Config) *Main {
	return &Main{Config: cfg, Logger: newLogger(os.Stderr, cfg.LogLevel, cfg.LogFormat), errc: make(chan error, 1)}
}

func (m *Main) distributed() bool { return m.Config.RedisURL != "" }

// openStore opens the store of the configured mode; in distributed mode on the
// MySQL database of dsn.
func (m *Main) openStore(ctx context.Context, dsn string) (*store.Store, error) {
	if m.distributed() {
		return store.OpenMySQL(ctx, dsn, m.Logger)
	}
	st, err := store.OpenSQLite(ctx, m.Config.DataDir, m.Logger)
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("%w: stop the other numberd or give this one another --data-dir", err)
	}
	return st, err
}

// openEngine opens the allocation engine of the configured mode on m.store.
func (m *Main) openEngine(ctx context.Context, opts alloc.Options) (numberd.Engine, error) {
	// Each engine is returned only when it opened: a nil *distributed.Engine or
	// *embedded.Engine stored in the engine interface would not compare equal to nil,
	// and Close would call its Close.
	if !m.distributed() {
		e, err := embedded.Open(ctx, m.store, opts)
		if err != nil {
			return nil, err
		}
		return e, nil
	}
	redis.SetLogger(redisLogger{m.Logger})
	var err error
	if m.redis, err = newRedis(m.Config.RedisURL); err != nil {
		return nil, fmt.Errorf("%s: %w", m.Config.nameOf("redis"), err)
	}
	e, err := distributed.Open(ctx, m.redis, m.store, opts)
	if err != nil {
		return nil, fmt.Errorf("redis %s: %w", redisWhere(m.Config.RedisURL), err)
	}
	return e, nil
}

// Open starts numberd: it opens the store and the engine, listens on the configured
// address, and serves in the background. A bind error is returned at once.
func (m *Main) Open(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			_ = m.Close(context.Background())
		}
	}()
	m.metrics = metrics.New()
	if m.store, err = m.openStore(ctx, boundedMySQLDSN(m.Config.MySQLDSN, m.Config.storeTimeout())); err != nil {
		return err
	}
	upstreams, err := m.Config.upstreams()
	if err != nil {
		return err
	}
	// The engine signals the refill worker after each allocation; the worker,
	// made next, needs the engine.
	var worker atomic.Pointer[refill.Worker]
	opts := alloc.Options{Logger: m.Logger, Metrics: m.metrics, LeaseMax: m.Config.LeaseMax, LeaseMin: min(100, m.Config.LeaseMax), RequestTimeout: m.Config.RequestTimeout, Observe: func(pool string, available int64) {
		if w := worker.Load(); w != nil {
			w.Observe(pool, available)
		}
	}}
	// A request may wait for a store operation the engine runs in the background
	// (a lease extension): its failure must be the request's 503 in time.
	opts.StoreTimeout = m.Config.storeTimeout()
	if m.engine, err = m.openEngine(ctx, opts); err != nil {
		return err
	}
	m.refill = refill.New(refill.Config{
		Store: m.store, Engine: m.engine, Upstreams: upstreams, Logger: m.Logger, Metrics: m.metrics,
		LockTTL: m.Config.RefillLease, ScanEvery: m.Config.RefillScan,
	})
	worker.Store(m.refill)
	m.refill.Start()
	api, err := httpapi.New(httpapi.Config{
		Engine: m.engine, Refill: m.refill, Tokens: m.Config.Tokens, Metrics: m.metrics, Logger: m.Logger,
		Upstreams: m.Config.upstreamNames(), RequestTimeout: m.Config.RequestTimeout,
	})
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if m.ln, err = net.Listen("tcp", m.Config.Addr); err != nil {
		return err
	}
	m.ln = httpapi.QuietListener(m.ln)
	m.http = &http.Server{
		Handler: api,
		// ReadTimeout bounds a request's header and body together, so a client
		// that stops sending holds nothing for long. It costs nothing per request:
		// net/http sets the read deadline once per request with or without it. No
		// WriteTimeout: that would set another deadline on every answer; answers
		// are small and bounded by the handlers' own timeouts.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       requestReadTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(m.Logger.Handler(), slog.LevelDebug),
		ConnContext:       httpapi.ConnContext,
	}
	go func() {
		if err := m.http.Serve(m.ln); !errors.Is(err, http.ErrServerClosed) {
			m.errc <- err
		}
	}()
	attrs := []any{"addr", m.ln.Addr().String(), "mode", "embedded", "store", m.store.Name()}
	if m.distributed() {
		attrs[3] = "distributed"
	} else {
		attrs = append(attrs, "data_dir", m.Config.DataDir)
	}
	if api.Open() {
		m.Logger.Warn("no tokens configured: every caller is admin (open mode)", "addr", m.ln.Addr().String())
	}
	m.Logger.Info("listening", attrs...)
	return nil
}

// Addr is the address numberd listens on.
func (m *Main) Addr() net.Addr { return m.ln.Addr() }

// Err delivers an error that stopped the HTTP server.
func (m *Main) Err() <-chan error { return m.errc }

// Close drains requests in flight, then stops the engine and closes the store.
func (m *Main) Close(ctx context.Context) error {
	var errs []error
	if m.http != nil {
		if err := m.http.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("draining requests: %w", err))
		}
	}
	if m.refill != nil {
		if err := m.refill.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping refills: %w", err))
		}
	}
	if m.engine != nil {
		if err := m.engine.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping the engine: %w", err))
		}
	}
	if m.redis != nil {
		_ = m.redis.Close()
	}
	if m.store != nil {
		if err := m.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing the store: %w", err))
		}
	}
	return errors.Join(errs...)
}

// requestReadTimeout bounds reading one request, header and body.
const requestReadTimeout = 10 * time.Second
