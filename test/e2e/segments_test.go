package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"
)

// n20 is the 20-digit number 24442 followed by k as 15 digits.
func n20(k int64) string { return fmt.Sprintf("24442%015d", k) }

func segPath(pool string) string { return "/v1/pools/" + pool + "/segments" }

// TestSegmentOverlap checks every overlap rule of the contract (api/openapi.yaml) against a queued, an
// active, an exhausted and a retired segment.
func TestSegmentOverlap(t *testing.T) {
	t.Parallel()
	s := shared
	pool := newPoolID("overlap")
	s.createPool(t, adminToken, pool, 20)

	type span struct {
		state      string
		start, end int64
	}
	// Loaded in this order: exhausted is used up, retired is retired while active,
	// active has one number issued, queued waits behind it.
	segs := []span{
		{"exhausted", 1001, 1100},
		{"retired", 2001, 2100},
		{"active", 3001, 3100},
		{"queued", 4001, 4100},
	}
	ids := map[string]string{}
	for _, sg := range segs[:2] {
		ids[sg.state] = str(s.loadSegment(t, adminToken, pool, n20(sg.start), n20(sg.end)), "id")
	}
	s.allocate(t, adminToken, pool, 100) // uses up "exhausted"
	wantStatus(t, s.do(t, "POST", segPath(pool)+"/"+ids["retired"]+"/retire", adminToken, nil), http.StatusOK)
	for _, sg := range segs[2:] {
		ids[sg.state] = str(s.loadSegment(t, adminToken, pool, n20(sg.start), n20(sg.end)), "id")
	}
	if got, want := s.allocate(t, adminToken, pool, 1), []string{n20(3001)}; !slices.Equal(got, want) {
		t.Fatalf("allocation after the setup: got %v, want %v", got, want)
	}
	before := s.segments(t, adminToken, pool)
	for i, sg := range segs {
		if got := str(before[i], "state"); got != sg.state {
			t.Fatalf("setup: segment %d (%s) has state %q, want %q", i, str(before[i], "start"), got, sg.state)
		}
	}
	statusBefore := s.poolStatus(t, adminToken, pool)

	for _, sg := range segs {
		t.Run(sg.state, func(t *testing.T) {
			a, b := sg.start, sg.end
			overlaps := []struct {
				name     string
				from, to int64
			}{
				{"inside", a + 10, b - 10},
				{"one number inside", a + 50, a + 50},
				{"around", a - 5, b + 5},
				{"same start, shorter", a, b - 1},
				{"same start, longer", a, b + 1},
				{"same end, shorter", a + 1, b},
				{"same end, longer", a - 1, b},
				{"touching the start", a - 10, a},
				{"across the start", a - 10, a + 10},
				{"touching the end", b, b + 10},
				{"across the end", b - 10, b + 10},
				{"first number only", a, a},
				{"last number only", b, b},
			}
			for _, o := range overlaps {
				r := s.do(t, "POST", segPath(pool), adminToken, map[string]any{"start": n20(o.from), "end": n20(o.to)})
				if msg := checkProblem(r, http.StatusConflict, "segment_overlap"); msg != "" {
					t.Errorf("%s (%s..%s): %s:\n%s", o.name, n20(o.from), n20(o.to), r, msg)
				}
			}

			r := s.do(t, "POST", segPath(pool), adminToken, map[string]any{"start": n20(a), "end": n20(b)})
			wantStatus(t, r, http.StatusOK)
			if got := r.Str("id"); got != ids[sg.state] {
				t.Errorf("identical segment: id %q, want the existing %q", got, ids[sg.state])
			}
			if got := r.Str("state"); got != sg.state {
				t.Errorf("identical segment: state %q, want %q", got, sg.state)
			}
			if r.Str("start") != n20(a) || r.Str("end") != n20(b) {
				t.Errorf("identical segment: %s, want %s..%s", r, n20(a), n20(b))
			}
		})
	}

	after := s.segments(t, adminToken, pool)
	if len(after) != len(before) {
		t.Fatalf("refused and identical loads changed the segment list: %d segments, want %d: %v", len(after), len(before), after)
	}
	for i := range after {
		for _, k := range []string{"id", "start", "end", "state", "used", "size"} {
			if str(after[i], k) != str(before[i], k) {
				t.Errorf("segment %d: %s changed from %q to %q", i, k, str(before[i], k), str(after[i], k))
			}
		}
	}
	statusAfter := s.poolStatus(t, adminToken, pool)
	for _, k := range []string{"available", "issued"} {
		if statusAfter.Str(k) != statusBefore.Str(k) {
			t.Errorf("pool %s changed from %q to %q", k, statusBefore.Str(k), statusAfter.Str(k))
		}
	}
	if got, want := s.allocate(t, adminToken, pool, 1), []string{n20(3002)}; !slices.Equal(got, want) {
		t.Errorf("allocation after the refused loads: got %v, want %v", got, want)
	}

	// Adjacent ranges are no overlap.
	adjacent := []struct {
		name     string
		from, to int64
	}{
		{"right after the exhausted one", 1101, 1110},
		{"right before the retired one", 1991, 2000},
		{"right after the retired one", 2101, 2110},
		{"right before the active one", 2991, 3000},
		{"between the active and the queued one", 3101, 4000},
		{"right after the queued one", 4101, 4101},
	}
	for _, a := range adjacent {
		r := s.do(t, "POST", segPath(pool), adminToken, map[string]any{"start": n20(a.from), "end": n20(a.to)})
		if r.Status != http.StatusCreated {
			t.Errorf("%s (%s..%s): %s, want 201", a.name, n20(a.from), n20(a.to), r)
		}
	}

	// Another pool may hold the very same numbers.
	other := newPoolID("overlap-other")
	s.createPool(t, adminToken, other, 20)
	for _, sg := range segs {
		r := s.do(t, "POST", segPath(other), adminToken, map[string]any{"start": n20(sg.start), "end": n20(sg.end)})
		if r.Status != http.StatusCreated {
			t.Errorf("another pool, %s..%s: %s, want 201", n20(sg.start), n20(sg.end), r)
		}
	}
}

// TestSegmentListAndRetire checks the segment list's states, counts and order, and
// retiring: a gap for the unused numbers, no-op twice, 404 for an unknown id.
func TestSegmentListAndRetire(t *testing.T) {
	t.Parallel()
	s := shared
	pool := newPoolID("retire")
	s.createPool(t, adminToken, pool, 20)

	type load struct {
		start, end int64
		ref        string
	}
	loads := []load{
		{1, 10, ""},
		{101, 200, "grant-42"},
		{301, 400, ""},
		{501, 600, ""},
		{701, 800, ""},
	}
	var ids []string
	for _, l := range loads {
		body := map[string]any{"start": n20(l.start), "end": n20(l.end)}
		if l.ref != "" {
			body["ref"] = l.ref
		}
		r := s.do(t, "POST", segPath(pool), adminToken, body)
		wantStatus(t, r, http.StatusCreated)
		ids = append(ids, r.Str("id"))
		want := map[bool]string{true: "active", false: "queued"}[len(ids) == 1]
		if got := r.Str("state"); got != want || r.Str("size") != numSize(n20(l.start), n20(l.end)) || r.Str("used") != "0" || r.Str("source") != "manual" {
			t.Errorf("load %d: %s, want state %s, size %s, used 0, source manual", len(ids), r, want, numSize(n20(l.start), n20(l.end)))
		}
	}
	if slices.Contains(ids, "") || len(slices.Compact(slices.Clone(ids))) != len(ids) {
		t.Fatalf("segment ids %q, want distinct non-empty ids", ids)
	}
	s.allocate(t, adminToken, pool, 10) // uses up segment 0
	s.allocate(t, adminToken, pool, 1)  // segment 1 active, 1 used

	retire := func(id string) *Reply {
		return s.do(t, "POST", segPath(pool)+"/"+id+"/retire", adminToken, nil)
	}
	r := retire(ids[3]) // a queued segment
	wantStatus(t, r, http.StatusOK)
	if r.Str("state") != "retired" || r.Str("id") != ids[3] {
		t.Errorf("retire: %s, want segment %s with state retired", r, ids[3])
	}
	r = retire(ids[3])
	wantStatus(t, r, http.StatusOK)
	if r.Str("state") != "retired" {
		t.Errorf("retire twice: %s, want state retired", r)
	}

	type want struct{ state, size, used string }
	wants := []want{
		{"exhausted", "10", "10"},
		{"active", "100", "1"},
		{"queued", "100", "0"},
		{"retired", "100", "0"},
		{"queued", "100", "0"},
	}
	checkList := func(wants []want) {
		t.Helper()
		segs := s.segments(t, adminToken, pool)
		if len(segs) != len(wants) {
			t.Fatalf("segment list has %d segments, want %d: %v", len(segs), len(wants), segs)
		}
		for i, sg := range segs {
			w, l := wants[i], loads[i]
			got := want{str(sg, "state"), str(sg, "size"), str(sg, "used")}
			if got != w {
				t.Errorf("segment %d: got state/size/used %v, want %v", i, got, w)
			}
			if str(sg, "id") != ids[i] || str(sg, "start") != n20(l.start) || str(sg, "end") != n20(l.end) {
				t.Errorf("segment %d: %v, want id %s, %s..%s (load order)", i, sg, ids[i], n20(l.start), n20(l.end))
			}
			if got := str(sg, "source"); got != "manual" {
				t.Errorf("segment %d: source %q, want manual", i, got)
			}
			if l.ref != "" && str(sg, "ref") != l.ref {
				t.Errorf("segment %d: ref %v, want %q", i, sg["ref"], l.ref)
			}
			if l.ref == "" && sg["ref"] != nil {
				t.Errorf("segment %d: ref %v, want null", i, sg["ref"])
			}
			for _, k := range []string{"ywlsh", "expires_at"} {
				if v, ok := sg[k]; !ok || v != nil {
					t.Errorf("segment %d: %s = %v (present %v), want null", i, k, v, ok)
				}
			}
		}
	}
	checkList(wants)

	gaps := s.gaps(t, adminToken, pool)
	if len(gaps) != 1 {
		t.Fatalf("gaps %v, want one retired gap (retiring twice must not add one)", gaps)
	}
	checkGap(t, gaps[0], n20(501), n20(600), "100", "retired")

	// Retiring the active segment: its unused numbers become a gap and the next
	// queued segment takes over.
	r = retire(ids[1])
	wantStatus(t, r, http.StatusOK)
	if r.Str("state") != "retired" {
		t.Errorf("retire the active segment: %s, want state retired", r)
	}
	wants[1], wants[2] = want{"retired", "100", "1"}, want{"active", "100", "0"}
	checkList(wants)
	gaps = s.gaps(t, adminToken, pool)
	if len(gaps) != 2 {
		t.Fatalf("gaps %v, want two", gaps)
	}
	found := false
	for _, g := range gaps {
		if str(g, "start") == n20(102) {
			found = true
			checkGap(t, g, n20(102), n20(200), "99", "retired")
		}
	}
	if !found {
		t.Errorf("gaps %v: no gap %s..%s", gaps, n20(102), n20(200))
	}
	if got, want := s.allocate(t, adminToken, pool, 2), []string{n20(301), n20(302)}; !slices.Equal(got, want) {
		t.Errorf("allocation after retiring the active segment: got %v, want %v", got, want)
	}
	// Retiring a used-up segment records no gap: it has no unused numbers. (Whether
	// its state stays exhausted or becomes retired, the contract leaves open.)
	r = retire(ids[0])
	wantStatus(t, r, http.StatusOK)
	if got := r.Str("state"); got != "exhausted" && got != "retired" {
		t.Errorf("retire an exhausted segment: %s, want state exhausted or retired", r)
	}
	wants[0].state = r.Str("state")
	wants[2].used = "2"
	if got := s.gaps(t, adminToken, pool); len(got) != 2 {
		t.Errorf("retiring an exhausted segment added a gap: %v", got)
	}
	// 10+100+100+100+100 loaded = issued (10+1+2) + available (98+100) + gaps (100+99).
	st := s.poolStatus(t, adminToken, pool)
	issued, avail := decimal(t, "issued", st.Str("issued")), decimal(t, "available", st.Str("available"))
	if issued != 13 || avail != 198 {
		t.Errorf("%s: issued %d available %d, want 13 and 198", st, issued, avail)
	}
	if got := issued + avail + 100 + 99; got != 410 {
		t.Errorf("issued + available + gaps = %d, want 410 (every number loaded)", got)
	}

	for _, id := range []string{"987654321", "999999999999"} {
		wantProblem(t, retire(id), http.StatusNotFound, "segment_not_found")
	}
	// A segment id of another pool is unknown in this one.
	other := newPoolID("retire-other")
	s.createPool(t, adminToken, other, 20)
	wantProblem(t, s.do(t, "POST", segPath(other)+"/"+ids[2]+"/retire", adminToken, nil), http.StatusNotFound, "segment_not_found")
	checkList(wants)
}

func checkGap(t *testing.T, g map[string]any, start, end, count, reason string) {
	t.Helper()
	got := [4]string{str(g, "start"), str(g, "end"), str(g, "count"), str(g, "reason")}
	if want := [4]string{start, end, count, reason}; got != want {
		t.Errorf("gap start/end/count/reason %q, want %q", got, want)
	}
	if _, err := time.Parse(time.RFC3339, str(g, "at")); err != nil {
		t.Errorf("gap at %v: %v", g["at"], err)
	}
}
