// Package upstreamsim is a simulated tax platform: it serves the upstream
// protocol (package upstreamapi), granting consecutive segments, and fails, loses
// replies and waits on demand, for tests and for `numberd upstream-sim`.
package upstreamsim

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/numberd/numberd/internal/segment"
	"github.com/numberd/numberd/internal/upstreamapi"
)

// Limits of the simulator's requests.
const (
	// MaxQuantity is the most numbers one request may ask the simulator for.
	MaxQuantity = 1_000_000
	// MaxYwlsh is the longest ywlsh the simulator accepts.
	MaxYwlsh = 64
	// maxBody bounds a request body.
	maxBody = 64 << 10
)

// Options configures a Server.
type Options struct {
	// Digits is the width of the numbers granted, 1..32.
	Digits int
	// First is the first number granted, of Digits digits; empty means 1
	// ("00000000000000000001" for 20 digits).
	First string
	// Latency is how long every call waits before it is answered.
	Latency time.Duration
	// FailRate is the probability, 0..1, that a call answers 503 and grants nothing.
	FailRate float64
	// LoseRate is the probability, 0..1, that a call that granted (or re-answered)
	// a segment answers 503 all the same, as a reply lost on the way back.
	LoseRate float64
	// Token, when not empty, is the bearer token every call to /segments must carry.
	Token string
	// Seed seeds the draws of FailRate and LoseRate (math/rand/v2 PCG): the same
	// seed and the same sequence of calls give the same answers.
	Seed uint64
	// Logger receives one debug line per answer to /segments that granted,
	// re-answered or failed on purpose; nil logs nothing. The token is never logged.
	Logger *slog.Logger
}

// Stats counts what a Server did.
type Stats struct {
	// Applies counts the calls to /segments, whatever they answered.
	Applies int64 `json:"applies"`
	// Granted counts the segments granted, each once however often it was re-answered.
	Granted int64 `json:"granted"`
	// Numbers counts the numbers in the granted segments.
	Numbers int64 `json:"numbers"`
}

// Server serves the upstream protocol, as `numberd upstream-sim` does: POST
// /segments grants consecutive segments from Options.First, and GET /stats
// answers its Stats. It is safe for concurrent use.
type Server struct {
	digits  int
	latency time.Duration
	token   string
	logger  *slog.Logger

	mu       sync.Mutex
	rng      *rand.Rand
	failRate float64
	loseRate float64
	next     segment.Number // the first number of the next segment
	done     bool           // every number was granted
	grants   map[string]grant
	stats    Stats
}

// grant is a segment the simulator granted, by the ywlsh it was granted to.
type grant struct {
	pool       string
	quantity   int64
	start, end string
}

// New returns a Server for opts. It returns an error if Digits is out of range,
// First is not a number of Digits digits, Latency is negative, or a rate is
// outside 0..1.
func New(opts Options) (*Server, error) {
	if !segment.ValidDigits(opts.Digits) {
		return nil, fmt.Errorf("upstreamsim: digits must be 1..%d, got %d", segment.MaxDigits, opts.Digits)
	}
	first := opts.First
	if first == "" {
		first = strings.Repeat("0", opts.Digits-1) + "1"
	}
	next, err := segment.ParseNumber(first, opts.Digits)
	if err != nil {
		return nil, fmt.Errorf("upstreamsim: first number: %w", err)
	}
	if opts.Latency < 0 {
		return nil, fmt.Errorf("upstreamsim: latency must not be negative, got %v", opts.Latency)
	}
	if err := validRates(opts.FailRate, opts.LoseRate); err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{
		digits:   opts.Digits,
		latency:  opts.Latency,
		token:    opts.Token,
		logger:   logger,
		rng:      rand.New(rand.NewPCG(opts.Seed, 0x6e756d6265726464)),
		failRate: opts.FailRate,
		loseRate: opts.LoseRate,
		next:     next,
		grants:   map[string]grant{},
	}, nil
}

func validRates(fail, lose float64) error {
	for _, r := range []struct {
		name string
		v    float64
	}{{"fail", fail}, {"lose", lose}} {
		if math.IsNaN(r.v) || r.v < 0 || r.v > 1 {
			return fmt.Errorf("upstreamsim: %s rate must be 0..1, got %v", r.name, r.v)
		}
	}
	return nil
}

// SetRates changes FailRate and LoseRate for the calls that follow, as an upstream
// that recovers or degrades. It returns an error, changing nothing, if a rate is
// outside 0..1.
func (s *Server) SetRates(failRate, loseRate float64) error {
	if err := validRates(failRate, loseRate); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failRate, s.loseRate = failRate, loseRate
	return nil
}

// Stats returns what the simulator did so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Handler returns the simulator's HTTP handler: POST /segments and GET /stats.
// Every error answer is JSON {"error": "..."}.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/segments":
			if r.Method != http.MethodPost {
				w.Header().Set("Allow", http.MethodPost)
				writeError(w, http.StatusMethodNotAllowed, "use POST /segments")
				return
			}
			s.apply(w, r)
		case "/stats":
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				w.Header().Set("Allow", "GET, HEAD")
				writeError(w, http.StatusMethodNotAllowed, "use GET /stats")
				return
			}
			writeJSON(w, http.StatusOK, s.Stats())
		default:
			writeError(w, http.StatusNotFound, "no such route: the simulator serves POST /segments and GET /stats")
		}
	})
}

// errRequest is wrapped by the reasons a request is answered 400.
var errRequest = errors.New("bad request")

// apply serves POST /segments: wait, check the token and the body, maybe fail,
// grant or re-answer, maybe lose the reply.
func (s *Server) apply(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.stats.Applies++
	s.mu.Unlock()

	// Reading the body first lets the server notice a caller that hangs up during
	// the latency, which cancels the request's context.
	body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if s.latency > 0 {
		t := time.NewTimer(s.latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			writeError(w, http.StatusServiceUnavailable, "request cancelled before it was served; nothing granted")
			return
		}
	}
	if s.token != "" && !s.authorized(r.Header.Get("Authorization")) {
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
		return
	}
	req, err := decodeApply(body, readErr)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}

	s.mu.Lock()
	if s.rng.Float64() < s.failRate {
		s.mu.Unlock()
		s.logger.Debug("failed on purpose", "pool", req.Pool, "ywlsh", req.Ywlsh, "quantity", req.Quantity)
		writeError(w, http.StatusServiceUnavailable, "simulated failure; nothing granted")
		return
	}
	g, known := s.grants[req.Ywlsh]
	switch {
	case known && (g.pool != req.Pool || g.quantity != req.Quantity):
		s.mu.Unlock()
		writeError(w, http.StatusConflict, fmt.Sprintf("ywlsh %q was used for %d numbers of pool %q; a new request needs a new ywlsh",
			req.Ywlsh, g.quantity, g.pool))
		return
	case !known:
		if g, err = s.grantLocked(req); err != nil {
			s.mu.Unlock()
			writeError(w, http.StatusConflict, err.Error())
			return
		}
	}
	lost := s.rng.Float64() < s.loseRate
	s.mu.Unlock()

	msg := "granted"
	if known {
		msg = "re-answered"
	}
	s.logger.Debug(msg, "pool", req.Pool, "ywlsh", req.Ywlsh, "quantity", req.Quantity,
		"start", g.start, "end", g.end, "reply_lost", lost)
	if lost {
		writeError(w, http.StatusServiceUnavailable, "simulated lost reply")
		return
	}
	writeJSON(w, http.StatusOK, upstreamapi.ApplyReply{Ywlsh: &req.Ywlsh, Start: &g.start, End: &g.end})
}

// grantLocked grants the next segment of req.Quantity numbers to req.Ywlsh; s.mu
// is held. A segment never spans two prefixes (numbers differing beyond their last
// 18 digits): one that would starts at the next prefix's first number instead.
func (s *Server) grantLocked(req upstreamapi.ApplyRequest) (grant, error) {
	if s.done {
		return grant{}, errors.New("every number of the simulator was granted")
	}
	width := s.next.Width - len(s.next.Prefix)
	last := int64(1)
	for range width {
		last *= 10
	}
	last-- // the largest suffix: width nines
	if req.Quantity > last+1 {
		return grant{}, fmt.Errorf("%d numbers do not fit in a segment of %d-digit numbers", req.Quantity, s.digits)
	}
	lo := s.next.Suffix
	if lo+req.Quantity-1 > last {
		prefix, ok := incDecimal(s.next.Prefix)
		if !ok {
			return grant{}, fmt.Errorf("only %d numbers are left, %d asked", last-lo+1, req.Quantity)
		}
		s.next = segment.Number{Prefix: prefix, Suffix: 0, Width: s.next.Width}
		lo = 0
	}
	hi := lo + req.Quantity - 1
	rg := segment.Range{Prefix: s.next.Prefix, Lo: lo, Hi: hi, Width: s.next.Width}
	g := grant{pool: req.Pool, quantity: req.Quantity, start: rg.Start(), end: rg.End()}
	if hi < last {
		s.next.Suffix = hi + 1
	} else if prefix, ok := incDecimal(s.next.Prefix); ok {
		s.next = segment.Number{Prefix: prefix, Suffix: 0, Width: s.next.Width}
	} else {
		s.done = true
	}
	s.grants[req.Ywlsh] = g
	s.stats.Granted++
	s.stats.Numbers += req.Quantity
	return g, nil
}

// incDecimal adds one to the decimal string d, keeping its width; ok is false if d
// is empty or all nines.
func incDecimal(d string) (string, bool) {
	b := []byte(d)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < '9' {
			b[i]++
			return string(b), true
		}
		b[i] = '0'
	}
	return "", false
}

// authorized reports whether header is "Bearer <the simulator's token>".
func (s *Server) authorized(header string) bool {
	const scheme = "Bearer "
	if len(header) < len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(header[len(scheme):]), []byte(s.token)) == 1
}

// decodeApply checks a POST /segments body and the error of reading it; its
// errors wrap errRequest and say what is wrong.
func decodeApply(body []byte, readErr error) (upstreamapi.ApplyRequest, error) {
	var req upstreamapi.ApplyRequest
	if readErr != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(readErr, &tooLarge) {
			return req, fmt.Errorf("%w: body over %d bytes", errRequest, maxBody)
		}
		return req, fmt.Errorf("%w: reading the body: %v", errRequest, readErr)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("%w: body must be JSON {\"pool\", \"quantity\", \"ywlsh\"}: %v", errRequest, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return req, fmt.Errorf("%w: body must hold one JSON object", errRequest)
	}
	switch {
	case req.Pool == "":
		return req, fmt.Errorf("%w: pool is required", errRequest)
	case req.Quantity < 1 || req.Quantity > MaxQuantity:
		return req, fmt.Errorf("%w: quantity must be 1..%d, got %d", errRequest, MaxQuantity, req.Quantity)
	case len(req.Ywlsh) < 1 || len(req.Ywlsh) > MaxYwlsh:
		return req, fmt.Errorf("%w: ywlsh must be 1..%d characters, got %d", errRequest, MaxYwlsh, len(req.Ywlsh))
	}
	for i := 0; i < len(req.Ywlsh); i++ {
		if c := req.Ywlsh[i]; c < 0x20 || c > 0x7e {
			return req, fmt.Errorf("%w: ywlsh must be printable ASCII", errRequest)
		}
	}
	return req, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
