// Package httpapi is numberd's REST interface: the handlers of the generated strict
// server (api.StrictServerInterface), bearer-token authentication, problem+json
// errors, request limits, and the operations endpoints.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/api"
	"github.com/numberd/numberd/internal/metrics"
)

// MaxBodyBytes is the largest request body numberd reads.
const MaxBodyBytes = 64 << 10

// Engine is what the handlers need of an allocation engine.
type Engine = numberd.Service

// Refiller is what the handlers need of the refill worker.
type Refiller interface {
	Status(ctx context.Context, pool string) (numberd.RefillStatus, error)
	Trigger(ctx context.Context, pool string) (numberd.RefillStatus, error)
}

// Config configures a Server.
type Config struct {
	Engine Engine
	// Refill, if set, runs refills; without it a refill request is refused.
	Refill  Refiller
	Tokens  []Token
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// Upstreams names the configured upstreams a pool may refill from.
	Upstreams map[string]bool
	// RequestTimeout bounds the engine's work on one request (default 5s), so a
	// store that hangs answers 503, never a hung request.
	RequestTimeout time.Duration
}

// Server serves the REST contract of api/openapi.yaml.
type Server struct {
	engine  Engine
	ops     operations
	auth    *authenticator
	metrics *metrics.Metrics
	logger  *slog.Logger
	timeout time.Duration
	handler http.Handler
	routes_ sync.Map // route pattern → *routeObs
}

// operations is the handler of the generated strict server. The generated
// interface wants every operation of the contract on one value; each group keeps
// its own type and what it needs, and this value only puts them side by side.
type operations struct {
	*poolHandlers
	*segmentHandlers
	*allocationHandlers
}

var _ api.StrictServerInterface = operations{}

// New builds a Server. It returns an error if a token is malformed.
func New(cfg Config) (*Server, error) {
	auth, err := newAuthenticator(cfg.Tokens)
	if err != nil {
		return nil, err
	}
	s := &Server{engine: cfg.Engine, auth: auth, metrics: cfg.Metrics, logger: cfg.Logger, timeout: cfg.RequestTimeout}
	if s.metrics == nil {
		s.metrics = metrics.New()
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	if s.timeout <= 0 {
		s.timeout = 5 * time.Second
	}
	s.ops = operations{
		poolHandlers: &poolHandlers{
			engine: cfg.Engine, refill: cfg.Refill, upstreams: cfg.Upstreams, timeout: s.timeout, logger: s.logger,
		},
		segmentHandlers:    &segmentHandlers{engine: cfg.Engine, timeout: s.timeout},
		allocationHandlers: &allocationHandlers{engine: cfg.Engine, refill: cfg.Refill},
	}
	s.handler = s.routes()
	return s, nil
}

// Open reports whether the server runs without tokens.
func (s *Server) Open() bool { return s.auth.open() }

// ServeHTTP serves one request. Its context carries chi's routing state and the
// caller's identity in one value, made once: copying the request for each (what
// chi and an authentication middleware would do each on its own) showed in the
// profile of the allocation path.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc := &requestContext{Context: r.Context(), route: routeContexts.Get().(*chi.Context)}
	s.handler.ServeHTTP(w, r.WithContext(rc))
	rc.route.Reset()
	routeContexts.Put(rc.route)
}

var routeContexts = sync.Pool{New: func() any { return chi.NewRouteContext() }}

// requestContext is a request's context: chi's route context, the identity, and
// the status observe sees written.
type requestContext struct {
	context.Context
	route  *chi.Context
	id     *identity
	status statusWriter
}

func (c *requestContext) Value(key any) any {
	switch key {
	case chi.RouteCtxKey:
		return c.route
	case identityKey{}:
		if c.id == nil {
			return nil
		}
		return c.id
	}
	return c.Context.Value(key)
}

func (s *Server) routes() http.Handler {
	return s.router(quieted(s.limitBody(http.HandlerFunc(s.serveAllocation))))
}

// router returns every route. Observing, recovering and authentication run before
// routing, as the contract orders authentication first; the body is read after
// routing, so that the allocation route can quiet its connection before its body
// is read (quietconn.go), and with the same answers for an unknown route or
// method as for any other. allocate serves the allocation route in place of the
// generated handler; nil keeps the generated one, which the tests compare with.
func (s *Server) router(allocate http.Handler) http.Handler {
	root := chi.NewRouter()
	root.Use(s.observe, s.recoverPanics, s.authenticate)
	root.NotFound(s.limitBody(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, fmt.Errorf("%w: %s", errNotFound, r.URL.Path))
	})).ServeHTTP)
	root.MethodNotAllowed(s.limitBody(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// chi names the allowed methods only with its own 405 handler.
		if allowed := allowedMethods(root, r.URL.Path); allowed != "" {
			w.Header().Set("Allow", allowed)
		}
		s.writeError(w, r, fmt.Errorf("%w: %s %s", errMethod, r.Method, r.URL.Path))
	})).ServeHTTP)
	r := root.With(s.limitBody)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { writeText(w, "ok\n") })
	r.Get("/readyz", s.readyz)
	r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{}))
	r.Route("/debug/pprof", func(r chi.Router) {
		r.Use(s.adminOnly)
		r.Get("/", pprof.Index)
		r.Get("/cmdline", pprof.Cmdline)
		r.Get("/profile", pprof.Profile)
		r.Get("/symbol", pprof.Symbol)
		r.Get("/trace", pprof.Trace)
		r.Get("/{name}", func(w http.ResponseWriter, r *http.Request) { pprof.Handler(chi.URLParam(r, "name")).ServeHTTP(w, r) })
	})
	r.Get("/openapi.yaml", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(api.Spec)
	})
	strict := api.NewStrictHandlerWithOptions(s.ops, nil, api.StrictHTTPServerOptions{
		RequestErrorHandlerFunc:  s.requestError,
		ResponseErrorHandlerFunc: s.writeError,
	})
	api.HandlerWithOptions(strict, api.ChiServerOptions{BaseRouter: r, ErrorHandlerFunc: s.paramError})
	if allocate != nil {
		// Registered after the generated routes, it replaces the generated
		// handler of the same method and pattern.
		root.Method(http.MethodPost, allocationRoute, allocate)
	}
	return root
}

// paramError answers a path parameter or header that does not bind.
func (s *Server) paramError(w http.ResponseWriter, r *http.Request, err error) {
	s.writeError(w, r, fmt.Errorf("%w: %v", errInvalid, err))
}

func writeText(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, body)
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	// A store that does not answer a ping within two seconds is not ready.
	ctx, cancel := context.WithTimeout(r.Context(), min(s.timeout, 2*time.Second))
	defer cancel()
	if err := s.engine.Ready(ctx); err != nil {
		failing := failingStores(err)
		s.logger.Warn("not ready", "failing", failing, "err", err)
		k := classify(numberd.ErrUnavailable)
		s.writeProblem(w, k, fmt.Sprintf("unreachable: %v", failing), failing)
		return
	}
	writeText(w, "ok\n")
}

func failingStores(err error) []string {
	var down *numberd.DownError
	if errors.As(err, &down) {
		return down.Stores
	}
	return []string{"store"}
}

// recoverPanics answers a panic with a 500 problem and logs it without a stack
// trace, which could carry request data. It runs inside observe, so the answer is
// counted.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.logger.Error("handler panicked", "method", r.Method, "route", routePattern(r), "panic", fmt.Sprint(v))
				s.writeProblem(w, internalProblem, "", nil)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// observe counts answers by route pattern and status and logs each at debug level.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var sw *statusWriter
		if rc, ok := r.Context().(*requestContext); ok {
			sw = &rc.status
		} else {
			sw = new(statusWriter)
		}
		*sw = statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		s.account(r, routePattern(r), sw.status, start)
	})
}

// account counts an answer of status on route, begun at start, and logs it at
// debug level.
func (s *Server) account(r *http.Request, route string, status int, start time.Time) {
	elapsed := time.Since(start)
	s.routeMetrics(route).observe(s.metrics, route, status, elapsed)
	if s.logger.Enabled(r.Context(), slog.LevelDebug) {
		s.logger.Debug("request", "method", r.Method, "route", route, "status", status, "duration", elapsed)
	}
}

// routeObs holds a route's metrics, looked up once: label lookups per request
// showed in the profile.
type routeObs struct {
	seconds prometheus.Observer
	codes   sync.Map // status code → prometheus.Counter
}

func (s *Server) routeMetrics(route string) *routeObs {
	if o, ok := s.routes_.Load(route); ok {
		return o.(*routeObs)
	}
	o, _ := s.routes_.LoadOrStore(route, &routeObs{seconds: s.metrics.HTTPSeconds.WithLabelValues(route)})
	return o.(*routeObs)
}

func (o *routeObs) observe(m *metrics.Metrics, route string, status int, elapsed time.Duration) {
	o.seconds.Observe(elapsed.Seconds())
	c, ok := o.codes.Load(status)
	if !ok {
		c, _ = o.codes.LoadOrStore(status, m.HTTPRequests.WithLabelValues(route, statusText(status)))
	}
	c.(prometheus.Counter).Inc()
}

func routePattern(r *http.Request) string {
	if rc := chi.RouteContext(r.Context()); rc != nil {
		if p := rc.RoutePattern(); p != "" {
			return p
		}
	}
	return "unmatched"
}

var statusTexts = map[int]string{}

func init() {
	for code := 100; code < 600; code++ {
		statusTexts[code] = fmt.Sprint(code)
	}
}

func statusText(code int) string {
	if t, ok := statusTexts[code]; ok {
		return t
	}
	return "other"
}

type statusWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// allowedMethods lists the methods router serves path with, for a 405's Allow.
func allowedMethods(router chi.Routes, path string) string {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions} {
		if router.Match(chi.NewRouteContext(), m, path) {
			allowed = append(allowed, m)
		}
	}
	return strings.Join(allowed, ", ")
}
