package e2e

// The HTTP client side of the harness: requests, answers, assertions on them, and
// arithmetic on numbers of up to 32 digits.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// Reply is one HTTP answer.
type Reply struct {
	Status int
	Header http.Header
	Raw    []byte
	JSON   map[string]any // the decoded body if it is a JSON object (numbers as json.Number)
	what   string         // "METHOD path", for messages
}

func (r *Reply) String() string {
	return fmt.Sprintf("%s → %d %s %s", r.what, r.Status, r.Header.Get("Content-Type"), bytes.TrimSpace(r.Raw))
}

// Str returns the string member key of the JSON body, "" if absent or not a string.
func (r *Reply) Str(key string) string { s, _ := r.JSON[key].(string); return s }

// Strs returns the member key as a list of strings; ok is false if it is not one.
func (r *Reply) Strs(key string) (list []string, ok bool) { return strList(r.JSON[key]) }

func strList(v any) ([]string, bool) {
	arr, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, len(arr))
	for i, e := range arr {
		if out[i], ok = e.(string); !ok {
			return nil, false
		}
	}
	return out, true
}

// Objs returns the member key as a list of JSON objects.
func (r *Reply) Objs(key string) ([]map[string]any, bool) { return objList(r.JSON[key]) }

func objList(v any) ([]map[string]any, bool) {
	arr, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]map[string]any, len(arr))
	for i, e := range arr {
		if out[i], ok = e.(map[string]any); !ok {
			return nil, false
		}
	}
	return out, true
}

// Req is one request. Body nil sends no body; a string or []byte is sent as is, an
// io.Reader chunked (no Content-Length); anything else is encoded as JSON. Header
// values are set after Token, so an "Authorization" entry replaces the bearer token.
type Req struct {
	Method, Path, Token string
	Body                any
	Header              map[string]string
}

// Send makes the request; an error means no HTTP answer came.
func (s *Server) Send(q Req) (*Reply, error) {
	var body io.Reader
	switch b := q.Body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	case []byte:
		body = bytes.NewReader(b)
	case io.Reader: // of unknown length: sent chunked
		body = struct{ io.Reader }{b}
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequest(q.Method, s.url+q.Path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if q.Token != "" {
		req.Header.Set("Authorization", "Bearer "+q.Token)
	}
	for k, v := range q.Header {
		req.Header[http.CanonicalHeaderKey(k)] = []string{v}
	}
	resp, err := s.client.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the body: %w", q.Method, q.Path, err)
	}
	r := &Reply{Status: resp.StatusCode, Header: resp.Header, Raw: raw, what: q.Method + " " + q.Path}
	if strings.Contains(resp.Header.Get("Content-Type"), "json") && len(raw) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var m map[string]any
		if dec.Decode(&m) == nil {
			r.JSON = m
		}
	}
	if s.record {
		var h bytes.Buffer
		_ = resp.Header.Write(&h)
		s.mu.Lock()
		s.answers = append(s.answers, fmt.Sprintf("%s → %s\n%s\n%s", r.what, resp.Status, h.String(), raw))
		s.mu.Unlock()
	}
	return r, nil
}

// Do makes the request and fails t if no HTTP answer came.
func (s *Server) Do(t testing.TB, q Req) *Reply {
	t.Helper()
	r, err := s.Send(q)
	if err != nil {
		t.Fatalf("%s %s: %v", q.Method, q.Path, err)
	}
	return r
}

// do is Do for the common case.
func (s *Server) do(t testing.TB, method, path, token string, body any) *Reply {
	t.Helper()
	return s.Do(t, Req{Method: method, Path: path, Token: token, Body: body})
}

// wantStatus fails t unless r has status want.
func wantStatus(t testing.TB, r *Reply, want int) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("%s: got status %d, want %d", r, r.Status, want)
	}
}

// wantJSON fails t unless r's body is a JSON object sent as application/json.
func wantJSON(t testing.TB, r *Reply) {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") || r.JSON == nil {
		t.Fatalf("%s: want a JSON object with Content-Type application/json", r)
	}
}

// checkProblem reports how r differs from a problem+json answer with status and
// code, "" if it does not.
func checkProblem(r *Reply, status int, code string) string {
	var bad []string
	if r.Status != status {
		bad = append(bad, fmt.Sprintf("status %d, want %d", r.Status, status))
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		bad = append(bad, fmt.Sprintf("Content-Type %q, want application/problem+json", ct))
	}
	if r.JSON == nil {
		bad = append(bad, "body is not a JSON object")
		return strings.Join(bad, "; ")
	}
	if got := r.Str("code"); got != code {
		bad = append(bad, fmt.Sprintf("code %q, want %q", got, code))
	}
	if got, want := r.Str("type"), "https://numberd.dev/problems/"+code; got != want {
		bad = append(bad, fmt.Sprintf("type %q, want %q", got, want))
	}
	if r.Str("title") == "" {
		bad = append(bad, "title missing or empty")
	}
	if n, ok := r.JSON["status"].(json.Number); !ok || n.String() != fmt.Sprint(r.Status) {
		bad = append(bad, fmt.Sprintf("member status %v, want %d (the HTTP status)", r.JSON["status"], r.Status))
	}
	return strings.Join(bad, "; ")
}

// wantProblem fails t unless r is a problem+json answer with status and code.
func wantProblem(t testing.TB, r *Reply, status int, code string) {
	t.Helper()
	if msg := checkProblem(r, status, code); msg != "" {
		t.Fatalf("%s:\n%s", r, msg)
	}
}

// expectProblem is wantProblem's non-fatal twin.
func expectProblem(t testing.TB, r *Reply, status int, code string) {
	t.Helper()
	if msg := checkProblem(r, status, code); msg != "" {
		t.Errorf("%s:\n%s", r, msg)
	}
}

// newPoolID returns a pool id unique within the test run.
func newPoolID(prefix string) string { return fmt.Sprintf("%s-%d", prefix, seq.Add(1)) }

// createPool creates pool with digits and no upstream, failing t unless it answers 201.
func (s *Server) createPool(t testing.TB, token, pool string, digits int) {
	t.Helper()
	r := s.do(t, "PUT", "/v1/pools/"+pool, token, map[string]any{"digits": digits})
	wantStatus(t, r, http.StatusCreated)
	wantJSON(t, r)
}

// loadSegment loads start..end into pool, failing t unless it answers 201; it
// returns the segment.
func (s *Server) loadSegment(t testing.TB, token, pool, start, end string) map[string]any {
	t.Helper()
	r := s.do(t, "POST", "/v1/pools/"+pool+"/segments", token, map[string]any{"start": start, "end": end})
	wantStatus(t, r, http.StatusCreated)
	wantJSON(t, r)
	if r.Str("id") == "" {
		t.Fatalf("%s: no segment id", r)
	}
	return r.JSON
}

// allocate takes count numbers of pool, failing t unless it answers 200 with count
// numbers.
func (s *Server) allocate(t testing.TB, token, pool string, count int) []string {
	t.Helper()
	r := s.do(t, "POST", "/v1/pools/"+pool+"/numbers", token, map[string]any{"count": count})
	wantStatus(t, r, http.StatusOK)
	wantJSON(t, r)
	nums, ok := r.Strs("numbers")
	if !ok || len(nums) != count {
		t.Fatalf("%s: got %d numbers, want %d", r, len(nums), count)
	}
	if got := r.Str("pool"); got != pool {
		t.Fatalf("%s: pool %q, want %q", r, got, pool)
	}
	return nums
}

// poolStatus answers GET /v1/pools/{pool}, failing t unless it answers 200.
func (s *Server) poolStatus(t testing.TB, token, pool string) *Reply {
	t.Helper()
	r := s.do(t, "GET", "/v1/pools/"+pool, token, nil)
	wantStatus(t, r, http.StatusOK)
	wantJSON(t, r)
	return r
}

// wantCounts fails t unless the pool's available and issued are as given.
func (s *Server) wantCounts(t testing.TB, token, pool, available, issued string) {
	t.Helper()
	r := s.poolStatus(t, token, pool)
	if got := r.Str("available"); got != available {
		t.Errorf("%s: available %q, want %q", r, got, available)
	}
	if got := r.Str("issued"); got != issued {
		t.Errorf("%s: issued %q, want %q", r, got, issued)
	}
}

// segments answers the pool's segment list.
func (s *Server) segments(t testing.TB, token, pool string) []map[string]any {
	t.Helper()
	r := s.do(t, "GET", "/v1/pools/"+pool+"/segments", token, nil)
	wantStatus(t, r, http.StatusOK)
	wantJSON(t, r)
	segs, ok := r.Objs("segments")
	if !ok {
		t.Fatalf("%s: no segments list", r)
	}
	return segs
}

// gaps answers the pool's gap list.
func (s *Server) gaps(t testing.TB, token, pool string) []map[string]any {
	t.Helper()
	r := s.do(t, "GET", "/v1/pools/"+pool+"/gaps", token, nil)
	wantStatus(t, r, http.StatusOK)
	wantJSON(t, r)
	gaps, ok := r.Objs("gaps")
	if !ok {
		t.Fatalf("%s: no gaps list", r)
	}
	return gaps
}

// str is the string member key of obj.
func str(obj map[string]any, key string) string { s, _ := obj[key].(string); return s }

// Numbers of up to 32 digits, as decimal strings of a fixed width.

// bigOf is n's value; anything but decimal digits counts as -1, so that a bad
// answer, which the tests report on their own, cannot crash the run.
func bigOf(n string) *big.Int {
	v, ok := new(big.Int).SetString(n, 10)
	if !ok || !isDigits(n, len(n)) {
		return big.NewInt(-1)
	}
	return v
}

// numAdd is n+k with n's width, leading zeros kept.
func numAdd(n string, k int64) string {
	v := new(big.Int).Add(bigOf(n), big.NewInt(k))
	return fmt.Sprintf("%0*s", len(n), v.String())
}

// numSpan lists start..end inclusive (meant for small ranges).
func numSpan(start, end string) []string {
	var out []string
	for n := start; numCmp(n, end) <= 0; n = numAdd(n, 1) {
		out = append(out, n)
	}
	return out
}

// numCmp compares two numbers of one width.
func numCmp(a, b string) int { return bigOf(a).Cmp(bigOf(b)) }

// numDiff is a-b.
func numDiff(a, b string) int64 { return new(big.Int).Sub(bigOf(a), bigOf(b)).Int64() }

// numSize is end-start+1 as a decimal string.
func numSize(start, end string) string {
	v := new(big.Int).Sub(bigOf(end), bigOf(start))
	return v.Add(v, big.NewInt(1)).String()
}

// inRange reports whether start <= n <= end.
func inRange(n, start, end string) bool { return numCmp(start, n) <= 0 && numCmp(n, end) <= 0 }

// isDigits reports whether s is width decimal digits.
func isDigits(s string, width int) bool {
	if len(s) != width {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// decimal parses a decimal-string count, failing t if it is not one.
func decimal(t testing.TB, what, s string) int64 {
	t.Helper()
	if !isDigits(s, len(s)) || s == "" {
		t.Fatalf("%s = %q, want a decimal string", what, s)
	}
	return bigOf(s).Int64()
}

// errorList collects the errors of goroutines, which must not call t.Fatal.
type errorList struct {
	mu   sync.Mutex
	errs []error
}

func (l *errorList) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, fmt.Errorf(format, args...))
}

func (l *errorList) check(t testing.TB) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) > 0 {
		t.Fatalf("%d errors, the first ones:\n%v", len(l.errs), errors.Join(l.errs[:min(len(l.errs), 10)]...))
	}
}

// reportFirst fails t with the first ten of msgs and the count of the rest.
func reportFirst(t testing.TB, msgs []string) {
	t.Helper()
	for _, m := range msgs[:min(len(msgs), 10)] {
		t.Error(m)
	}
	if len(msgs) > 10 {
		t.Errorf("… and %d more like these", len(msgs)-10)
	}
}
