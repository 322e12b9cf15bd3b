package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/api"
	"github.com/numberd/numberd/internal/segment"
)

// Errors of this package; the wrapping text is the answer's detail.
var (
	errInvalid      = errors.New("invalid argument")
	errUnauthorized = errors.New("unauthorized")
	errForbidden    = errors.New("forbidden")
	errTooLarge     = errors.New("request body too large")
	errNotFound     = errors.New("not found")
	errMethod       = errors.New("method not allowed")
)

// codeInternal answers an error no other row maps: a bug, never a store outage.
const codeInternal api.ProblemCode = "internal"

// problemKind is one row of the table mapping errors to answers.
type problemKind struct {
	err    error
	status int
	code   api.ProblemCode
	title  string
	// public: the error's own text is fit for the answer's detail. Server-side
	// failures are described generically; their text goes only to the log.
	public bool
	// unsure: the failure may have hidden an answer, so the detail must not claim
	// that nothing was consumed.
	unsure bool
}

// problems maps errors, tested in order with errors.Is, to problem answers.
var problems = []problemKind{
	{errInvalid, 400, api.ProblemCodeInvalidArgument, "invalid argument", true, false},
	{segment.ErrInvalid, 400, api.ProblemCodeInvalidArgument, "invalid argument", true, false},
	{numberd.ErrInvalid, 400, api.ProblemCodeInvalidArgument, "invalid argument", true, false},
	{errUnauthorized, 401, api.ProblemCodeUnauthorized, "missing or unknown bearer token", true, false},
	{errForbidden, 403, api.ProblemCodeForbidden, "the token may not do this", true, false},
	{numberd.ErrPoolNotFound, 404, api.ProblemCodePoolNotFound, "pool not found", true, false},
	{numberd.ErrSegmentNotFound, 404, api.ProblemCodeSegmentNotFound, "segment not found", true, false},
	{errNotFound, 404, api.ProblemCodeNotFound, "no such route", true, false},
	{errMethod, 405, api.ProblemCodeMethodNotAllowed, "method not allowed", true, false},
	{numberd.ErrOverlap, 409, api.ProblemCodeSegmentOverlap, "segment overlaps an existing segment", true, false},
	{errTooLarge, 413, api.ProblemCodeBodyTooLarge, "request body too large", true, false},
	{numberd.ErrIdempotencyConflict, 422, api.ProblemCodeIdempotencyConflict, "idempotency key reused with a different request", true, false},
	{numberd.ErrExhausted, 503, api.ProblemCodePoolExhausted, "pool exhausted", true, false},
	{numberd.ErrUnavailable, 503, api.ProblemCodeUnavailable, "a backing store is unavailable", false, false},
	{numberd.ErrOutcomeUnknown, 503, api.ProblemCodeUnavailable, "a backing store did not answer in time", false, true},
	// Redis failing under an allocation may have hidden an earlier call's answer:
	// the careful words are true either way.
	{numberd.ErrRedisUnavailable, 503, api.ProblemCodeUnavailable, "a backing store is unavailable", false, true},
	{numberd.ErrClosed, 503, api.ProblemCodeUnavailable, "numberd is shutting down", false, false},
	{context.DeadlineExceeded, 503, api.ProblemCodeUnavailable, "a backing store did not answer in time", false, false},
	{context.Canceled, 503, api.ProblemCodeUnavailable, "the request was cancelled", false, false},
}

var internalProblem = problemKind{status: 500, code: codeInternal, title: "internal error"}

func classify(err error) problemKind {
	for _, k := range problems {
		if errors.Is(err, k.err) {
			return k
		}
	}
	return internalProblem
}

// detail is the answer's detail for err of kind k: the error's text without the
// sentinel's own words, or a generic sentence for server-side failures.
func detail(k problemKind, err error) string {
	switch {
	case k.unsure:
		return k.title + "; the numbers were not handed out, and a retry with the same Idempotency-Key is safe"
	case !k.public:
		return k.title + "; nothing was consumed"
	}
	msg := err.Error()
	if i := strings.Index(msg, k.err.Error()+": "); i >= 0 {
		msg = msg[:i] + msg[i+len(k.err.Error())+2:]
	} else if msg == k.err.Error() {
		return ""
	}
	return msg
}

// writeError answers err as problem+json and logs what the answer leaves out.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	k := classify(err)
	if !k.public {
		level := slog.LevelWarn
		if k.status >= 500 && k.code == codeInternal {
			level = slog.LevelError
		}
		s.logger.Log(r.Context(), level, "request failed", "method", r.Method, "route", routePattern(r), "status", k.status, "err", err)
	}
	var later *retryLater
	if errors.As(err, &later) {
		retryAfter(w, later.seconds)
	}
	s.writeProblem(w, k, detail(k, err), nil)
}

func (s *Server) writeProblem(w http.ResponseWriter, k problemKind, detail string, failing []string) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	if k.status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="numberd"`)
	}
	w.WriteHeader(k.status)
	_ = json.NewEncoder(w).Encode(api.Problem{
		Type: "https://numberd.dev/problems/" + string(k.code), Title: k.title, Status: k.status,
		Code: k.code, Detail: detail, Failing: failing,
	})
}

// retryAfter sets Retry-After, in whole seconds.
func retryAfter(w http.ResponseWriter, seconds int) {
	w.Header().Set("Retry-After", strconv.Itoa(max(seconds, 1)))
}
