package e2e

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
)

// idemPool creates a 20-digit pool with one 1000-number segment from first.
func idemPool(t *testing.T, s *Server, first string) string {
	t.Helper()
	pool := newPoolID("idem")
	s.createPool(t, adminToken, pool, 20)
	s.loadSegment(t, adminToken, pool, first, numAdd(first, 999))
	return pool
}

// allocIdem posts an allocation with an Idempotency-Key and the raw body (nil: none).
func allocIdem(t *testing.T, s *Server, token, pool, key string, body any) *Reply {
	t.Helper()
	return s.Do(t, Req{Method: "POST", Path: "/v1/pools/" + pool + "/numbers", Token: token, Body: body,
		Header: map[string]string{"Idempotency-Key": key}})
}

// numbersOf returns the numbers of a 200 allocation answer, failing t otherwise.
func numbersOf(t *testing.T, r *Reply, count int) []string {
	t.Helper()
	wantStatus(t, r, http.StatusOK)
	nums, ok := r.Strs("numbers")
	if !ok || len(nums) != count {
		t.Fatalf("%s: got %d numbers, want %d", r, len(nums), count)
	}
	return nums
}

func replayed(r *Reply) bool { return r.Header.Get("Idempotent-Replayed") == "true" }

func TestIdempotency(t *testing.T) {
	t.Parallel()
	s := shared
	const first = "24442000000000000001"

	t.Run("same key and body replays without consuming", func(t *testing.T) {
		t.Parallel()
		pool := idemPool(t, s, first)
		r1 := allocIdem(t, s, adminToken, pool, "order-1", map[string]any{"count": 3})
		got1 := numbersOf(t, r1, 3)
		if want := numSpan(first, numAdd(first, 2)); !slices.Equal(got1, want) {
			t.Fatalf("first answer %v, want %v", got1, want)
		}
		if replayed(r1) {
			t.Errorf("%s: first answer has Idempotent-Replayed: true", r1)
		}
		for i := range 3 {
			r := allocIdem(t, s, adminToken, pool, "order-1", map[string]any{"count": 3})
			if got := numbersOf(t, r, 3); !slices.Equal(got, got1) {
				t.Errorf("replay %d: got %v, want %v", i, got, got1)
			}
			if !replayed(r) {
				t.Errorf("replay %d: Idempotent-Replayed = %q, want \"true\"", i, r.Header.Get("Idempotent-Replayed"))
			}
		}
		s.wantCounts(t, adminToken, pool, "997", "3")
		if got, want := s.allocate(t, adminToken, pool, 1), []string{numAdd(first, 3)}; !slices.Equal(got, want) {
			t.Errorf("next plain allocation: got %v, want %v", got, want)
		}
	})

	t.Run("no body means count 1", func(t *testing.T) {
		t.Parallel()
		pool := idemPool(t, s, first)
		r1 := allocIdem(t, s, adminToken, pool, "k-default", nil)
		got1 := numbersOf(t, r1, 1)
		for _, body := range []any{`{"count":1}`, `{}`, `{ "count" : 1 }`, ``} {
			r := allocIdem(t, s, adminToken, pool, "k-default", body)
			if got := numbersOf(t, r, 1); !slices.Equal(got, got1) || !replayed(r) {
				t.Errorf("body %s: got %v replayed=%v, want %v replayed=true", body, got, replayed(r), got1)
			}
		}
		// And the other way round: first {"count":1}, then no body.
		r2 := allocIdem(t, s, adminToken, pool, "k-explicit", map[string]any{"count": 1})
		got2 := numbersOf(t, r2, 1)
		if r := allocIdem(t, s, adminToken, pool, "k-explicit", nil); !slices.Equal(numbersOf(t, r, 1), got2) || !replayed(r) {
			t.Errorf("no body after {\"count\":1}: %s, want %v replayed", r, got2)
		}
		s.wantCounts(t, adminToken, pool, "998", "2")
	})

	t.Run("same key with another count is a conflict", func(t *testing.T) {
		t.Parallel()
		pool := idemPool(t, s, first)
		got1 := numbersOf(t, allocIdem(t, s, adminToken, pool, "k-conflict", map[string]any{"count": 2}), 2)
		for _, body := range []any{map[string]any{"count": 3}, nil, map[string]any{"count": 1}} {
			r := allocIdem(t, s, adminToken, pool, "k-conflict", body)
			expectProblem(t, r, http.StatusUnprocessableEntity, "idempotency_conflict")
		}
		// The key still answers its own request.
		if r := allocIdem(t, s, adminToken, pool, "k-conflict", map[string]any{"count": 2}); !slices.Equal(numbersOf(t, r, 2), got1) {
			t.Errorf("after conflicts: %s, want %v", r, got1)
		}
		s.wantCounts(t, adminToken, pool, "998", "2")
	})

	t.Run("concurrent requests with one key", func(t *testing.T) {
		t.Parallel()
		pool := idemPool(t, s, first)
		const n = 12
		replies := make([]*Reply, n)
		var errs errorList
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				r, err := s.Send(Req{Method: "POST", Path: "/v1/pools/" + pool + "/numbers", Token: adminToken,
					Body: map[string]any{"count": 2}, Header: map[string]string{"Idempotency-Key": "together"}})
				if err != nil {
					errs.add("request %d: %v", i, err)
					return
				}
				replies[i] = r
			})
		}
		close(start)
		wg.Wait()
		errs.check(t)
		want := numSpan(first, numAdd(first, 1))
		fresh := 0
		for i, r := range replies {
			if got := numbersOf(t, r, 2); !slices.Equal(got, want) {
				t.Errorf("request %d: got %v, want %v", i, got, want)
			}
			if !replayed(r) {
				fresh++
			}
		}
		if fresh != 1 {
			t.Errorf("%d of %d answers lack Idempotent-Replayed: true, want exactly 1 (the one that allocated)", fresh, n)
		}
		if got, want := s.allocate(t, adminToken, pool, 1), []string{numAdd(first, 2)}; !slices.Equal(got, want) {
			t.Errorf("next plain allocation: got %v, want %v", got, want)
		}
	})

	t.Run("a key is scoped to its token", func(t *testing.T) {
		// idemScopePool is the one pool of clientOne and clientTwo (sharedConfig). Its
		// name is fixed, so a run (of several, with -count) uses a segment of its own,
		// of exactly the 6 numbers it takes, and a key of its own.
		pool := idemScopePool
		r := s.do(t, "PUT", "/v1/pools/"+pool, adminToken, map[string]any{"digits": 20})
		if r.Status != http.StatusCreated && r.Status != http.StatusOK {
			t.Fatalf("%s, want 201 or 200", r)
		}
		base := n20(seq.Add(1) * 1000)
		s.loadSegment(t, adminToken, pool, base, numAdd(base, 5))
		key := newPoolID("shared-key")
		one := numbersOf(t, allocIdem(t, s, clientOne, pool, key, map[string]any{"count": 2}), 2)
		if want := numSpan(base, numAdd(base, 1)); !slices.Equal(one, want) {
			t.Errorf("first token: got %v, want %v", one, want)
		}
		r2 := allocIdem(t, s, clientTwo, pool, key, map[string]any{"count": 2})
		two := numbersOf(t, r2, 2)
		if replayed(r2) || slices.Equal(one, two) {
			t.Errorf("second token with the same key: got %v replayed=%v, want fresh numbers (first token got %v)", two, replayed(r2), one)
		}
		if want := numSpan(numAdd(base, 2), numAdd(base, 3)); !slices.Equal(two, want) {
			t.Errorf("second token: got %v, want %v", two, want)
		}
		// The admin token is a third scope; each token replays its own answer.
		admin := numbersOf(t, allocIdem(t, s, adminToken, pool, key, map[string]any{"count": 2}), 2)
		if want := numSpan(numAdd(base, 4), numAdd(base, 5)); !slices.Equal(admin, want) {
			t.Errorf("admin token: got %v, want %v", admin, want)
		}
		for _, c := range []struct {
			token string
			want  []string
		}{{clientOne, one}, {clientTwo, two}, {adminToken, admin}} {
			r := allocIdem(t, s, c.token, pool, key, map[string]any{"count": 2})
			if got := numbersOf(t, r, 2); !slices.Equal(got, c.want) || !replayed(r) {
				t.Errorf("replay: got %v replayed=%v, want %v replayed", got, replayed(r), c.want)
			}
		}
		if got := s.poolStatus(t, adminToken, pool).Str("available"); got != "0" {
			t.Errorf("available %q after the replays, want \"0\" (replays consume nothing)", got)
		}
	})

	t.Run("a key is scoped to its pool", func(t *testing.T) {
		t.Parallel()
		p1 := idemPool(t, s, "24442000000000000001")
		p2 := idemPool(t, s, "24442000000000005001")
		got1 := numbersOf(t, allocIdem(t, s, adminToken, p1, "per-pool", nil), 1)
		r2 := allocIdem(t, s, adminToken, p2, "per-pool", nil)
		got2 := numbersOf(t, r2, 1)
		if replayed(r2) || !slices.Equal(got2, []string{"24442000000000005001"}) {
			t.Errorf("same key on another pool: got %v replayed=%v, want [24442000000000005001] not replayed (first pool got %v)",
				got2, replayed(r2), got1)
		}
		// A different count on the other pool is no conflict either.
		r3 := allocIdem(t, s, adminToken, idemPool(t, s, first), "per-pool", map[string]any{"count": 4})
		numbersOf(t, r3, 4)
	})

	t.Run("bad keys", func(t *testing.T) {
		t.Parallel()
		pool := idemPool(t, s, first)
		bad := []struct{ name, key string }{
			{"empty", ""},
			{"129 characters", strings.Repeat("k", 129)},
			{"tab inside", "tab\there"},
			{"non-ASCII", "schlüssel"},
		}
		for _, b := range bad {
			r := allocIdem(t, s, adminToken, pool, b.key, nil)
			if msg := checkProblem(r, http.StatusBadRequest, "invalid_argument"); msg != "" {
				t.Errorf("key %s: %s:\n%s", b.name, r, msg)
			}
		}
		s.wantCounts(t, adminToken, pool, "1000", "0")
		good := []struct{ name, key string }{
			{"128 characters", strings.Repeat("k", 128)},
			{"1 character", "k"},
			{"printable punctuation", `a~!@#$%^&*()_+{}|:"<>?[]\;',./ z`},
		}
		for i, g := range good {
			r := allocIdem(t, s, adminToken, pool, g.key, nil)
			if got, want := numbersOf(t, r, 1), []string{numAdd(first, int64(i))}; !slices.Equal(got, want) {
				t.Errorf("key %s: got %v, want %v", g.name, got, want)
			}
		}
	})
}
