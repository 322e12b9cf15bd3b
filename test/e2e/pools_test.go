package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"
)

// wantFields fails t unless obj has every key (null allowed) and the listed values.
func wantFields(t *testing.T, what string, obj map[string]any, keys []string, values map[string]string) {
	t.Helper()
	for _, k := range keys {
		if _, ok := obj[k]; !ok {
			t.Errorf("%s: member %q missing in %v", what, k, obj)
		}
	}
	for k, want := range values {
		got := "null"
		if v := obj[k]; v != nil {
			got = fmt.Sprint(v)
		}
		if got != want {
			t.Errorf("%s: %s = %s, want %s", what, k, got, want)
		}
	}
}

var poolKeys = []string{"pool", "digits", "refill_threshold", "upstream", "refill_quantity", "available", "issued",
	"active_segment", "queued_segments", "refill"}

// TestPoolSettings: create with defaults, update keeping omitted fields, and the
// status members of the contract (api/openapi.yaml).
func TestPoolSettings(t *testing.T) {
	t.Parallel()
	s := shared
	pool := newPoolID("settings")
	p := "/v1/pools/" + pool

	r := s.do(t, "PUT", p, adminToken, map[string]any{"digits": 20})
	wantStatus(t, r, http.StatusCreated)
	wantFields(t, "created pool", r.JSON, poolKeys, map[string]string{
		"pool": pool, "digits": "20", "refill_threshold": "50", "upstream": "null", "refill_quantity": "null",
		"available": "0", "issued": "0", "active_segment": "null", "queued_segments": "0",
	})
	refill, _ := r.JSON["refill"].(map[string]any)
	wantFields(t, "refill of a created pool", refill, []string{"state", "ywlsh", "last_error", "updated_at"},
		map[string]string{"state": "idle", "ywlsh": "null", "last_error": "null"})
	if _, err := time.Parse(time.RFC3339, str(refill, "updated_at")); err != nil {
		t.Errorf("refill.updated_at %v: %v", refill["updated_at"], err)
	}

	r = s.do(t, "PUT", p, adminToken, map[string]any{"refill_threshold": 7})
	wantStatus(t, r, http.StatusOK)
	wantFields(t, "updated pool", r.JSON, poolKeys, map[string]string{"digits": "20", "refill_threshold": "7", "refill_quantity": "null"})
	r = s.do(t, "PUT", p, adminToken, map[string]any{"refill_quantity": 500})
	wantStatus(t, r, http.StatusOK)
	wantFields(t, "updated pool", r.JSON, poolKeys, map[string]string{"digits": "20", "refill_threshold": "7", "refill_quantity": "500"})
	r = s.do(t, "PUT", p, adminToken, map[string]any{"digits": 20, "refill_threshold": 0})
	wantStatus(t, r, http.StatusOK)
	wantFields(t, "updated pool", r.JSON, poolKeys, map[string]string{"refill_threshold": "0", "refill_quantity": "500"})
	wantFields(t, "pool status", s.poolStatus(t, adminToken, pool).JSON, poolKeys,
		map[string]string{"pool": pool, "digits": "20", "refill_threshold": "0", "refill_quantity": "500"})

	// The active segment and its next number, the queued count.
	a := s.loadSegment(t, adminToken, pool, n20(1), n20(10))
	b := s.loadSegment(t, adminToken, pool, n20(101), n20(110))
	checkActive := func(seg map[string]any, next string, queued int) {
		t.Helper()
		st := s.poolStatus(t, adminToken, pool)
		if got := fmt.Sprint(st.JSON["queued_segments"]); got != fmt.Sprint(queued) {
			t.Errorf("queued_segments %s, want %d", got, queued)
		}
		active, _ := st.JSON["active_segment"].(map[string]any)
		if seg == nil {
			if st.JSON["active_segment"] != nil {
				t.Errorf("active_segment %v, want null", st.JSON["active_segment"])
			}
			return
		}
		wantFields(t, "active_segment", active, nil, map[string]string{
			"id": str(seg, "id"), "start": str(seg, "start"), "end": str(seg, "end"), "next": next,
		})
	}
	checkActive(a, n20(1), 1)
	s.allocate(t, adminToken, pool, 4)
	checkActive(a, n20(5), 1)
	s.allocate(t, adminToken, pool, 8) // 5..10 of a, 101..102 of b
	checkActive(b, n20(103), 0)
	s.allocate(t, adminToken, pool, 8)
	checkActive(nil, "", 0)

	// The pool list holds the same status.
	r = s.do(t, "GET", "/v1/pools", adminToken, nil)
	wantStatus(t, r, http.StatusOK)
	pools, _ := r.Objs("pools")
	i := slices.IndexFunc(pools, func(p map[string]any) bool { return str(p, "pool") == pool })
	if i < 0 {
		t.Fatalf("GET /v1/pools does not list %s", pool)
	}
	wantFields(t, "listed pool", pools[i], poolKeys, map[string]string{"available": "0", "issued": "20", "active_segment": "null"})
}

// TestSegmentExpiry: a segment's unused numbers are not handed out after its
// expires_at; they become a gap with reason expired, which every read shows at once:
// every number of a loaded segment is available, issued, or inside a gap.
func TestSegmentExpiry(t *testing.T) {
	t.Parallel()
	s := shared
	pool := newPoolID("expiry")
	s.createPool(t, adminToken, pool, 20)
	expires := time.Now().Add(2 * time.Second).UTC().Truncate(time.Second).Add(time.Second)
	r := s.do(t, "POST", segPath(pool), adminToken, map[string]any{
		"start": n20(1), "end": n20(100), "expires_at": expires.Format(time.RFC3339),
	})
	wantStatus(t, r, http.StatusCreated)
	if got, err := time.Parse(time.RFC3339, r.Str("expires_at")); err != nil || !got.Equal(expires) {
		t.Errorf("%s: expires_at %q, want %s", r, r.Str("expires_at"), expires.Format(time.RFC3339))
	}
	s.loadSegment(t, adminToken, pool, n20(201), n20(300))
	if got, want := s.allocate(t, adminToken, pool, 5), numSpan(n20(1), n20(5)); !slices.Equal(got, want) {
		t.Fatalf("before expiry: got %v, want %v", got, want)
	}
	if gaps := s.gaps(t, adminToken, pool); len(gaps) != 0 {
		t.Fatalf("gaps before expiry: %v, want none", gaps)
	}

	time.Sleep(time.Until(expires) + 300*time.Millisecond)
	// The gap list first: nothing else has touched the pool since the expiry.
	gaps := s.gaps(t, adminToken, pool)
	if len(gaps) != 1 {
		t.Errorf("gaps after expiry, read first: %v, want one expired gap %s..%s", gaps, n20(6), n20(100))
	} else {
		checkGap(t, gaps[0], n20(6), n20(100), "95", "expired")
	}
	s.wantCounts(t, adminToken, pool, "100", "5")
	segs := s.segments(t, adminToken, pool)
	if len(segs) != 2 || str(segs[0], "state") != "exhausted" || str(segs[0], "used") != "5" || str(segs[1], "state") != "active" {
		t.Errorf("segments %v, want the expired one exhausted with 5 used, the next active", segs)
	}
	if got, want := s.allocate(t, adminToken, pool, 2), []string{n20(201), n20(202)}; !slices.Equal(got, want) {
		t.Errorf("after expiry: got %v, want %v (the expired segment's numbers must not be handed out)", got, want)
	}
	gaps = s.gaps(t, adminToken, pool)
	if len(gaps) != 1 {
		t.Fatalf("gaps %v, want one expired gap", gaps)
	}
	checkGap(t, gaps[0], n20(6), n20(100), "95", "expired")
	s.wantCounts(t, adminToken, pool, "98", "7")

	// A segment loaded after its expires_at is never drawn from: a gap at once.
	past := newPoolID("expired")
	s.createPool(t, adminToken, past, 20)
	r = s.do(t, "POST", segPath(past), adminToken, map[string]any{
		"start": n20(1), "end": n20(10), "expires_at": "2020-01-01T00:00:00Z",
	})
	if r.Status == http.StatusCreated {
		if gaps := s.gaps(t, adminToken, past); len(gaps) != 1 || str(gaps[0], "reason") != "expired" || str(gaps[0], "count") != "10" {
			t.Errorf("an expired segment loaded, gaps read first: %v, want one expired gap of 10", gaps)
		}
		s.wantCounts(t, adminToken, past, "0", "0")
		wantProblem(t, s.do(t, "POST", "/v1/pools/"+past+"/numbers", adminToken, nil), http.StatusServiceUnavailable, "pool_exhausted")
	} else {
		expectProblem(t, r, http.StatusBadRequest, "invalid_argument") // refusing it is fine too
	}
}
