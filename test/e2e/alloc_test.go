package e2e

import (
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
)

const (
	segStart = "24442000000000000001"
	segEnd   = "24442000000000001000"
)

// TestDrainConcurrently drains a 1000-number segment with 32 goroutines: every
// number comes out exactly once, then the pool answers pool_exhausted.
func TestDrainConcurrently(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		counts []int // goroutine i asks for counts[i%len(counts)] at a time
	}{
		{"count 1", []int{1}},
		{"counts 1 to 5", []int{1, 2, 3, 4, 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := shared
			pool := newPoolID("drain")
			s.createPool(t, adminToken, pool, 20)
			s.loadSegment(t, adminToken, pool, segStart, segEnd)

			const workers = 32
			var (
				mu      sync.Mutex
				answers [][]string
				errs    errorList
				wg      sync.WaitGroup
			)
			for i := range workers {
				wg.Go(func() {
					count := tt.counts[i%len(tt.counts)]
					for {
						r, err := s.Send(Req{Method: "POST", Path: "/v1/pools/" + pool + "/numbers", Token: adminToken,
							Body: map[string]any{"count": count}})
						if err != nil {
							errs.add("worker %d: %v", i, err)
							return
						}
						switch r.Status {
						case http.StatusOK:
							nums, ok := r.Strs("numbers")
							if !ok || len(nums) != count {
								errs.add("%s: got %d numbers, want %d", r, len(nums), count)
								return
							}
							mu.Lock()
							answers = append(answers, nums)
							mu.Unlock()
						case http.StatusServiceUnavailable:
							if msg := checkProblem(r, http.StatusServiceUnavailable, "pool_exhausted"); msg != "" {
								errs.add("%s: %s", r, msg)
								return
							}
							if count == 1 {
								return
							}
							count = 1 // fewer than count left: take the rest one by one
						default:
							errs.add("%s: unexpected status", r)
							return
						}
					}
				})
			}
			wg.Wait()
			errs.check(t)

			var bad []string
			seen := map[string]bool{}
			for _, nums := range answers {
				for i, n := range nums {
					if !isDigits(n, 20) || !inRange(n, segStart, segEnd) {
						bad = append(bad, fmt.Sprintf("number %q is not a 20-digit number of %s..%s", n, segStart, segEnd))
					}
					if seen[n] {
						bad = append(bad, fmt.Sprintf("number %s handed out twice", n))
					}
					seen[n] = true
					if i > 0 && numCmp(nums[i-1], n) >= 0 {
						bad = append(bad, fmt.Sprintf("answer %v is not ascending", nums))
					}
				}
			}
			reportFirst(t, bad)
			if len(seen) != 1000 {
				t.Errorf("got %d distinct numbers, want 1000", len(seen))
			}
			wantProblem(t, s.do(t, "POST", "/v1/pools/"+pool+"/numbers", adminToken, nil), http.StatusServiceUnavailable, "pool_exhausted")
			s.wantCounts(t, adminToken, pool, "0", "1000")
		})
	}
}

// TestAllOrNothingAcrossSegments: a batch spans two segments, and a batch larger
// than what is left is refused without consuming anything.
func TestAllOrNothingAcrossSegments(t *testing.T) {
	t.Parallel()
	s := shared
	pool := newPoolID("span")
	s.createPool(t, adminToken, pool, 20)
	a1, a10 := "24442000000000000001", "24442000000000000010"
	b1, b10 := "24442000000000000101", "24442000000000000110"
	s.loadSegment(t, adminToken, pool, a1, a10)
	s.loadSegment(t, adminToken, pool, b1, b10)

	got := s.allocate(t, adminToken, pool, 15)
	want := append(numSpan(a1, a10), numSpan(b1, numAdd(b1, 4))...)
	if !slices.Equal(got, want) {
		t.Fatalf("count 15: got %v, want %v", got, want)
	}

	r := s.do(t, "POST", "/v1/pools/"+pool+"/numbers", adminToken, map[string]any{"count": 6})
	wantProblem(t, r, http.StatusServiceUnavailable, "pool_exhausted")
	s.wantCounts(t, adminToken, pool, "5", "15")

	got = s.allocate(t, adminToken, pool, 5)
	if want := numSpan(numAdd(b1, 5), b10); !slices.Equal(got, want) {
		t.Fatalf("count 5 after the refused count 6: got %v, want %v", got, want)
	}
	wantProblem(t, s.do(t, "POST", "/v1/pools/"+pool+"/numbers", adminToken, map[string]any{"count": 1}),
		http.StatusServiceUnavailable, "pool_exhausted")
	s.wantCounts(t, adminToken, pool, "0", "20")
}

// TestWideNumbers: numbers of up to 32 digits keep their width and leading zeros.
func TestWideNumbers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		digits     int
		start, end string
	}{
		{"32 digits", 32, "12345678901234000000000000000001", "12345678901234000000000000000100"},
		{"32 digits, leading zeros", 32, "00000000000000000000000000000001", "00000000000000000000000000000100"},
		{"32 digits, the highest numbers", 32, "99999999999999999999999999990000", "99999999999999999999999999999999"},
		{"20 digits, leading zeros", 20, "00000000000000000042", "00000000000000000141"},
		{"1 digit", 1, "0", "9"},
		{"18 digits, the highest suffixes", 18, "999999999999999000", "999999999999999999"},
		{"19 digits", 19, "0999999999999999990", "0999999999999999999"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := shared
			pool := newPoolID("wide")
			s.createPool(t, adminToken, pool, tt.digits)
			seg := s.loadSegment(t, adminToken, pool, tt.start, tt.end)
			if str(seg, "start") != tt.start || str(seg, "end") != tt.end {
				t.Errorf("segment %v: want start %s end %s", seg, tt.start, tt.end)
			}
			size := numSize(tt.start, tt.end)
			if got := str(seg, "size"); got != size {
				t.Errorf("segment size %q, want %q", got, size)
			}
			got := s.allocate(t, adminToken, pool, 3)
			if want := numSpan(tt.start, numAdd(tt.start, 2)); !slices.Equal(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
			for _, n := range got {
				if !isDigits(n, tt.digits) {
					t.Errorf("number %q is not %d digits", n, tt.digits)
				}
			}
			st := s.poolStatus(t, adminToken, pool)
			if got := fmt.Sprint(st.JSON["digits"]); got != strconv.Itoa(tt.digits) {
				t.Errorf("%s: digits %s, want %d", st, got, tt.digits)
			}
			if got, want := st.Str("available"), bigOf(size).Sub(bigOf(size), big.NewInt(3)).String(); got != want {
				t.Errorf("%s: available %q, want %q", st, got, want)
			}
			if got := st.Str("issued"); got != "3" {
				t.Errorf("%s: issued %q, want \"3\"", st, got)
			}
		})
	}

	t.Run("counts beyond 2^53", func(t *testing.T) {
		t.Parallel()
		s := shared
		pool := newPoolID("wide-big")
		s.createPool(t, adminToken, pool, 20)
		// Two segments of 2^53 numbers each, the most one segment may hold.
		for _, first := range []string{"10000000000000000000", "20000000000000000000"} {
			seg := s.loadSegment(t, adminToken, pool, first, numAdd(first, 1<<53-1))
			if got := str(seg, "size"); got != "9007199254740992" {
				t.Errorf("segment %v: size %q, want 9007199254740992", seg, got)
			}
		}
		if got, want := s.allocate(t, adminToken, pool, 2), []string{"10000000000000000000", "10000000000000000001"}; !slices.Equal(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
		s.wantCounts(t, adminToken, pool, "18014398509481982", "2") // 2^54 - 2
		r := s.do(t, "POST", segPath(pool), adminToken, map[string]any{"start": "30000000000000000000", "end": "30009007199254740992"})
		wantProblem(t, r, http.StatusBadRequest, "invalid_argument") // 2^53 + 1 numbers
	})

	t.Run("beyond the last 18 digits", func(t *testing.T) {
		t.Parallel()
		s := shared
		pool := newPoolID("wide-bad")
		s.createPool(t, adminToken, pool, 32)
		bad := []struct{ name, start, end string }{
			{"prefixes differ", "12345678901234000000000000000001", "12345678901235000000000000000001"},
			{"suffix carries into the prefix", "12345678901234999999999999999990", "12345678901235000000000000000009"},
			{"first digit differs", "12345678901234000000000000000001", "22345678901234000000000000000001"},
		}
		for _, b := range bad {
			r := s.do(t, "POST", "/v1/pools/"+pool+"/segments", adminToken, map[string]any{"start": b.start, "end": b.end})
			if msg := checkProblem(r, http.StatusBadRequest, "invalid_argument"); msg != "" {
				t.Errorf("%s: %s:\n%s", b.name, r, msg)
			}
		}
		if segs := s.segments(t, adminToken, pool); len(segs) != 0 {
			t.Errorf("after refused loads the pool has %d segments, want 0: %v", len(segs), segs)
		}
	})
}
