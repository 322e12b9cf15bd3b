package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestBadRequests sends every bad input of the contract's error table and checks the
// status, the problem+json answer and its code; the server serves on afterwards.
func TestBadRequests(t *testing.T) {
	t.Parallel()
	s := shared
	pool := newPoolID("errs")
	s.createPool(t, adminToken, pool, 20)
	seg := s.loadSegment(t, adminToken, pool, segStart, segEnd)
	p := "/v1/pools/" + pool
	missing := newPoolID("missing")
	fresh := newPoolID("fresh") // never created: every PUT to it is refused
	big := `{"count":1}` + strings.Repeat(" ", 64<<10)
	bigSeg := `{"start":"` + n20(5001) + `","end":"` + n20(5002) + `","ref":"` + strings.Repeat("r", 65<<10) + `"}`

	type row struct {
		name         string
		method, path string
		body         any
		status       int
		code         string
	}
	const (
		bad  = http.StatusBadRequest
		inv  = "invalid_argument"
		post = "POST"
	)
	seg20 := func(start, end string) map[string]any { return map[string]any{"start": start, "end": end} }
	rows := []row{
		// Malformed JSON.
		{"allocate: malformed JSON", post, p + "/numbers", `{"count":`, bad, inv},
		{"allocate: not JSON", post, p + "/numbers", `count=1`, bad, inv},
		{"allocate: trailing garbage", post, p + "/numbers", `{"count":1} x`, bad, inv},
		{"put pool: malformed JSON", "PUT", p, `{digits: 20}`, bad, inv},
		{"load segment: malformed JSON", post, p + "/segments", `{"start":"` + n20(1), bad, inv},
		// Unknown fields.
		{"allocate: unknown field", post, p + "/numbers", `{"count":1,"extra":true}`, bad, inv},
		{"allocate: field name in another case", post, p + "/numbers", `{"Count":1}`, bad, inv},
		{"put pool: unknown field", "PUT", p, `{"digits":20,"colour":"red"}`, bad, inv},
		{"load segment: unknown field", post, p + "/segments", map[string]any{"start": n20(5001), "end": n20(5002), "size": "2"}, bad, inv},
		// Wrong types.
		{"allocate: count as a string", post, p + "/numbers", `{"count":"5"}`, bad, inv},
		{"allocate: fractional count", post, p + "/numbers", `{"count":1.5}`, bad, inv},
		{"allocate: count as a boolean", post, p + "/numbers", `{"count":true}`, bad, inv},
		{"allocate: body is an array", post, p + "/numbers", `[{"count":1}]`, bad, inv},
		{"allocate: body is a number", post, p + "/numbers", `1`, bad, inv},
		{"put pool: digits as a string", "PUT", p, `{"digits":"20"}`, bad, inv},
		{"load segment: numbers as JSON numbers", post, p + "/segments", `{"start":24442000000005001,"end":24442000000005002}`, bad, inv},
		// Count out of range.
		{"allocate: count 0", post, p + "/numbers", `{"count":0}`, bad, inv},
		{"allocate: count 1001", post, p + "/numbers", `{"count":1001}`, bad, inv},
		{"allocate: count -1", post, p + "/numbers", `{"count":-1}`, bad, inv},
		{"allocate: count beyond int64", post, p + "/numbers", `{"count":99999999999999999999}`, bad, inv},
		// Bad pool ids.
		{"pool id starting with -", "GET", "/v1/pools/-abc", nil, bad, inv},
		{"pool id starting with .", "PUT", "/v1/pools/.abc", `{"digits":20}`, bad, inv},
		{"pool id of 65 characters", "PUT", "/v1/pools/" + strings.Repeat("p", 65), `{"digits":20}`, bad, inv},
		{"pool id with an escaped slash", "GET", "/v1/pools/a%2Fb", nil, bad, inv},
		{"pool id with a space", post, "/v1/pools/a%20b/numbers", nil, bad, inv},
		{"pool id with a non-ASCII letter", "GET", "/v1/pools/caf%C3%A9", nil, bad, inv},
		{"allocate: bad pool id", post, "/v1/pools/-abc/numbers", `{"count":1}`, bad, inv},
		{"segments: bad pool id", "GET", "/v1/pools/-abc/segments", nil, bad, inv},
		{"gaps: bad pool id", "GET", "/v1/pools/a%2Fb/gaps", nil, bad, inv},
		// Digits out of range, missing on create, changed.
		{"create: digits 0", "PUT", "/v1/pools/" + fresh, `{"digits":0}`, bad, inv},
		{"create: digits 33", "PUT", "/v1/pools/" + fresh, `{"digits":33}`, bad, inv},
		{"create: digits -20", "PUT", "/v1/pools/" + fresh, `{"digits":-20}`, bad, inv},
		{"create: digits missing", "PUT", "/v1/pools/" + fresh, `{"refill_threshold":10}`, bad, inv},
		{"create: empty object", "PUT", "/v1/pools/" + fresh, `{}`, bad, inv},
		{"create: no body", "PUT", "/v1/pools/" + fresh, nil, bad, inv},
		{"update: digits changed", "PUT", p, `{"digits":21}`, bad, inv},
		{"update: digits 33", "PUT", p, `{"digits":33}`, bad, inv},
		// refill_threshold and upstream.
		{"create: negative refill_threshold", "PUT", "/v1/pools/" + fresh, `{"digits":20,"refill_threshold":-1}`, bad, inv},
		{"update: negative refill_threshold", "PUT", p, `{"refill_threshold":-5}`, bad, inv},
		{"create: upstream not configured", "PUT", "/v1/pools/" + fresh, `{"digits":20,"upstream":"nowhere"}`, bad, inv},
		{"update: upstream not configured", "PUT", p, `{"upstream":"nowhere"}`, bad, inv},
		// Segment numbers.
		{"segment: letter in start", post, p + "/segments", seg20("2444200000000000500a", n20(5002)), bad, inv},
		{"segment: sign in end", post, p + "/segments", seg20(n20(5001), "+4442000000000005002"), bad, inv},
		{"segment: space in start", post, p + "/segments", seg20(" 4442000000000005001", n20(5002)), bad, inv},
		{"segment: full-width digit", post, p + "/segments", seg20("２4442000000000005001", n20(5002)), bad, inv},
		{"segment: start 19 digits", post, p + "/segments", seg20("2444200000000005001", n20(5002)), bad, inv},
		{"segment: end 21 digits", post, p + "/segments", seg20(n20(5001), "244420000000000005002"), bad, inv},
		{"segment: both 19 digits", post, p + "/segments", seg20("4442000000000005001", "4442000000000005002"), bad, inv},
		{"segment: start > end", post, p + "/segments", seg20(n20(5002), n20(5001)), bad, inv},
		{"segment: empty start", post, p + "/segments", seg20("", n20(5002)), bad, inv},
		{"segment: end missing", post, p + "/segments", map[string]any{"start": n20(5001)}, bad, inv},
		{"segment: ref over 256 characters", post, p + "/segments", map[string]any{"start": n20(5001), "end": n20(5002), "ref": strings.Repeat("r", 257)}, bad, inv},
		{"segment: expires_at not a date", post, p + "/segments", map[string]any{"start": n20(5001), "end": n20(5002), "expires_at": "tomorrow"}, bad, inv},
		// Unknown pools and segments.
		{"get: unknown pool", "GET", "/v1/pools/" + missing, nil, http.StatusNotFound, "pool_not_found"},
		{"allocate: unknown pool", post, "/v1/pools/" + missing + "/numbers", `{"count":1}`, http.StatusNotFound, "pool_not_found"},
		{"load segment: unknown pool", post, "/v1/pools/" + missing + "/segments", seg20(n20(1), n20(2)), http.StatusNotFound, "pool_not_found"},
		{"segments: unknown pool", "GET", "/v1/pools/" + missing + "/segments", nil, http.StatusNotFound, "pool_not_found"},
		{"gaps: unknown pool", "GET", "/v1/pools/" + missing + "/gaps", nil, http.StatusNotFound, "pool_not_found"},
		{"retire: unknown pool", post, "/v1/pools/" + missing + "/segments/1/retire", nil, http.StatusNotFound, "pool_not_found"},
		{"refill: unknown pool", post, "/v1/pools/" + missing + "/refill", nil, http.StatusNotFound, "pool_not_found"},
		{"retire: unknown segment", post, p + "/segments/987654321/retire", nil, http.StatusNotFound, "segment_not_found"},
		{"retire: segment id 0", post, p + "/segments/0/retire", nil, http.StatusNotFound, "segment_not_found"},
		{"retire: segment id not digits", post, p + "/segments/abc/retire", nil, bad, inv},
		{"retire: negative segment id", post, p + "/segments/-1/retire", nil, bad, inv},
		{"retire: segment id beyond int64", post, p + "/segments/99999999999999999999/retire", nil, bad, inv},
		// Routes and methods.
		{"unknown route", "GET", "/v1/nothing", nil, http.StatusNotFound, "not_found"},
		{"unknown version", "GET", "/v2/pools", nil, http.StatusNotFound, "not_found"},
		{"unknown sub-resource", "GET", p + "/whatever", nil, http.StatusNotFound, "not_found"},
		{"GET on the allocation route", "GET", p + "/numbers", nil, http.StatusMethodNotAllowed, "method_not_allowed"},
		{"DELETE a pool", "DELETE", p, nil, http.StatusMethodNotAllowed, "method_not_allowed"},
		{"POST the pool list", post, "/v1/pools", `{}`, http.StatusMethodNotAllowed, "method_not_allowed"},
		{"PUT a segment list", "PUT", p + "/segments", nil, http.StatusMethodNotAllowed, "method_not_allowed"},
		{"GET retire", "GET", p + "/segments/" + str(seg, "id") + "/retire", nil, http.StatusMethodNotAllowed, "method_not_allowed"},
		{"GET refill", "GET", p + "/refill", nil, http.StatusMethodNotAllowed, "method_not_allowed"},
		// Bodies over 64 KiB.
		{"allocate: body over 64 KiB", post, p + "/numbers", big, http.StatusRequestEntityTooLarge, "body_too_large"},
		{"put pool: body over 64 KiB", "PUT", p, `{"digits":20}` + strings.Repeat(" ", 64<<10), http.StatusRequestEntityTooLarge, "body_too_large"},
		{"load segment: body over 64 KiB", post, p + "/segments", bigSeg, http.StatusRequestEntityTooLarge, "body_too_large"},
		{"allocate: chunked body over 64 KiB", post, p + "/numbers", strings.NewReader(big), http.StatusRequestEntityTooLarge, "body_too_large"},
		// Refill without an upstream.
		{"refill: pool without upstream", post, p + "/refill", nil, bad, inv},
	}
	for _, tt := range rows {
		r, err := s.Send(Req{Method: tt.method, Path: tt.path, Token: adminToken, Body: tt.body})
		if err != nil {
			t.Errorf("%s: %s %s: %v", tt.name, tt.method, tt.path, err)
			continue
		}
		if msg := checkProblem(r, tt.status, tt.code); msg != "" {
			t.Errorf("%s: %s:\n%s", tt.name, r, msg)
		}
	}

	// Nothing of it took effect.
	wantProblem(t, s.do(t, "GET", "/v1/pools/"+fresh, adminToken, nil), http.StatusNotFound, "pool_not_found")
	st := s.poolStatus(t, adminToken, pool)
	if fmt.Sprint(st.JSON["digits"]) != "20" || st.Str("available") != "1000" || st.Str("issued") != "0" {
		t.Errorf("after the bad requests: %s, want digits 20, available 1000, issued 0", st)
	}
	if got := fmt.Sprint(st.JSON["refill_threshold"]); got != "50" {
		t.Errorf("after the bad requests: refill_threshold %s, want the default 50", got)
	}
	if st.JSON["upstream"] != nil {
		t.Errorf("after the bad requests: upstream %v, want null", st.JSON["upstream"])
	}
	if segs := s.segments(t, adminToken, pool); len(segs) != 1 {
		t.Errorf("after the bad requests the pool has %d segments, want 1", len(segs))
	}

	// The same digits again is an update, and the server still serves.
	wantStatus(t, s.do(t, "PUT", p, adminToken, map[string]any{"digits": 20}), http.StatusOK)
	if got := s.allocate(t, adminToken, pool, 2); !slices.Equal(got, numSpan(segStart, numAdd(segStart, 1))) {
		t.Errorf("allocation after the bad requests: got %v, want the segment's first two", got)
	}
	long := newPoolID("long")
	long += strings.Repeat("x", 64-len(long)) // the longest pool id
	wantStatus(t, s.do(t, "PUT", "/v1/pools/"+long, adminToken, map[string]any{"digits": 20}), http.StatusCreated)
	wantStatus(t, s.do(t, "GET", "/healthz", "", nil), http.StatusOK)
}
