package alloctest

import (
	"context"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/segment"
)

// Run runs the contract against the engines open opens: uniqueness under
// concurrency, all or nothing, idempotency, expiry, retirement, gaps and the
// statuses that count them.
func Run(t *testing.T, open Opener) {
	t.Run("ConcurrentCallersDrainEverySegmentExactlyOnce", func(t *testing.T) { concurrentCallersDrainEverySegmentExactlyOnce(t, open) })
	t.Run("AllOrNothingAcrossSegments", func(t *testing.T) { allOrNothingAcrossSegments(t, open) })
	t.Run("InvalidRequests", func(t *testing.T) { invalidRequests(t, open) })
	t.Run("IdempotentReplay", func(t *testing.T) { idempotentReplay(t, open) })
	t.Run("ConcurrentCallsWithOneKeyGetOneAnswer", func(t *testing.T) { concurrentCallsWithOneKeyGetOneAnswer(t, open) })
	t.Run("ExpiredSegmentsBecomeGaps", func(t *testing.T) { expiredSegmentsBecomeGaps(t, open) })
	t.Run("RetireSegment", func(t *testing.T) { retireSegment(t, open) })
	t.Run("StatusCountsAddUp", func(t *testing.T) { statusCountsAddUp(t, open) })
}

func concurrentCallersDrainEverySegmentExactlyOnce(t *testing.T, open Opener) {
	h := newRig(t, open, alloc.Options{LeaseMin: 16})
	h.pool(t, "p", 20)
	segs := [][2]string{
		{"24442000000000000001", "24442000000000000700"},
		{"24442000000000001001", "24442000000000001300"},
		{"25442000000000000001", "25442000000000000500"},
	}
	var loaded []segment.Range
	for _, s := range segs {
		loaded = append(loaded, h.segment(t, "p", s[0], s[1]).Range)
	}
	const callers = 32
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			count := i%5 + 1
			for {
				a, err := h.eng.Allocate(context.Background(), numberd.Request{Pool: "p", Count: count})
				if errors.Is(err, numberd.ErrExhausted) {
					if count == 1 {
						return
					}
					count = 1
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				nums := a.Numbers()
				if len(nums) != count {
					t.Errorf("asked %d, got %d", count, len(nums))
				}
				AssertAscending(t, nums)
				mu.Lock()
				for _, n := range nums {
					if seen[n] {
						t.Errorf("number %s handed out twice", n)
					}
					seen[n] = true
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != 1500 {
		t.Errorf("handed out %d numbers, the segments hold 1500", len(seen))
	}
	for n := range seen {
		num, err := segment.ParseNumber(n, 20)
		if err != nil {
			t.Fatal(err)
		}
		in := false
		for _, r := range loaded {
			in = in || r.Contains(num)
		}
		if !in {
			t.Errorf("number %s is in no loaded segment", n)
		}
	}
	st, err := h.eng.Pool(context.Background(), "p")
	if err != nil {
		t.Fatal(err)
	}
	if st.Available != 0 || st.Issued != 1500 || st.Active != nil {
		t.Errorf("status after draining: available %d issued %d active %v", st.Available, st.Issued, st.Active)
	}
}

func allOrNothingAcrossSegments(t *testing.T, open Opener) {
	h := newRig(t, open, alloc.Options{})
	h.pool(t, "p", 4)
	h.segment(t, "p", "0001", "0010")
	h.segment(t, "p", "0101", "0110")
	got := h.take(t, "p", 15)
	want := []string{"0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0010", "0101", "0102", "0103", "0104", "0105"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if _, err := h.eng.Allocate(context.Background(), numberd.Request{Pool: "p", Count: 6}); !errors.Is(err, numberd.ErrExhausted) {
		t.Fatalf("asking 6 of 5: err = %v, want ErrExhausted", err)
	}
	if got := h.take(t, "p", 5); got[0] != "0106" || got[4] != "0110" {
		t.Errorf("after a refused request got %v, want 0106..0110: nothing may be consumed on failure", got)
	}
	if _, err := h.eng.Allocate(context.Background(), numberd.Request{Pool: "p", Count: 1}); !errors.Is(err, numberd.ErrExhausted) {
		t.Errorf("empty pool: err = %v, want ErrExhausted", err)
	}
}

func invalidRequests(t *testing.T, open Opener) {
	h := newRig(t, open, alloc.Options{})
	h.pool(t, "p", 4)
	for _, count := range []int{0, -1, numberd.MaxCount + 1} {
		if _, err := h.eng.Allocate(context.Background(), numberd.Request{Pool: "p", Count: count}); !errors.Is(err, numberd.ErrInvalid) {
			t.Errorf("count %d: err = %v, want ErrInvalid", count, err)
		}
	}
	if _, err := h.eng.Allocate(context.Background(), numberd.Request{Pool: "nope", Count: 1}); !errors.Is(err, numberd.ErrPoolNotFound) {
		t.Errorf("unknown pool: err = %v, want ErrPoolNotFound", err)
	}
}

func idempotentReplay(t *testing.T, open Opener) {
	h := newRig(t, open, alloc.Options{})
	h.pool(t, "p", 6)
	h.segment(t, "p", "000001", "000100")
	key := &numberd.Idempotency{Scope: "caller-a", Key: "invoice-17"}
	first, err := h.eng.Allocate(context.Background(), numberd.Request{Pool: "p", Count: 3, Idempotency: key})
	if err != nil || first.Replayed {
		t.Fatalf("first: replayed %v, %v", first.Replayed, err)
	}
	again, err := h.eng.Allocate(context.Background(), numberd.Request{Pool: "p", Count: 3, Idempotency: key})
	if err != nil || !again.Replayed {
		t.Fatalf("replay: replayed %v, %v", again.Replayed, err)
	}
	if a, b := first.Numbers(), again.Numbers(); len(a) != 3 || a[0] != b[0] || a[2] != b[2] {
		t.Errorf("replay answered %v, first answer %v", b, a)
	}
	if _, err := h.eng.Allocate(context.Background(), numberd.Request{Pool: "p", Count: 4, Idempotency: key}); !errors.Is(err, numberd.ErrIdempotencyConflict) {
		t.Errorf("same key, other count: err = %v, want ErrIdempotencyConflict", err)
	}
	other, err := h.eng.Allocate(context.Background(), numberd.Request{Pool: "p", Count: 3, Idempotency: &numberd.Idempotency{Scope: "caller-b", Key: "invoice-17"}})
	if err != nil || other.Replayed || other.Numbers()[0] != "000004" {
		t.Errorf("same key, other caller: %v replayed %v, %v; want fresh numbers from 000004", other.Numbers(), other.Replayed, err)
	}
	// A replay survives a restart: the record is durable.
	h.restart(t)
	again, err = h.eng.Allocate(context.Background(), numberd.Request{Pool: "p", Count: 3, Idempotency: key})
	if err != nil || !again.Replayed || again.Numbers()[0] != first.Numbers()[0] {
		t.Errorf("replay after restart: %v replayed %v, %v", again.Numbers(), again.Replayed, err)
	}
}

func concurrentCallsWithOneKeyGetOneAnswer(t *testing.T, open Opener) {
	h := newRig(t, open, alloc.Options{})
	h.pool(t, "p", 6)
	h.segment(t, "p", "000001", "000100")
	key := &numberd.Idempotency{Scope: "c", Key: "k"}
	answers := make([][]string, 12)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Go(func() {
			a, err := h.eng.Allocate(context.Background(), numberd.Request{Pool: "p", Count: 2, Idempotency: key})
			if err != nil {
				t.Error(err)
				return
			}
			answers[i] = a.Numbers()
		})
	}
	wg.Wait()
	for i, a := range answers {
		if len(a) != 2 || a[0] != answers[0][0] || a[1] != answers[0][1] {
			t.Errorf("call %d got %v, call 0 got %v", i, a, answers[0])
		}
	}
	if next := h.take(t, "p", 1); next[0] != "000003" {
		t.Errorf("next number %s, want 000003: twelve calls with one key consume once", next[0])
	}
}

// expiredSegmentsBecomeGaps: a segment's expiry is decided by the engine's
// clock of record (the store's in distributed mode), so the test waits for it
// in real time; the expired gap may be recorded in the background.
func expiredSegmentsBecomeGaps(t *testing.T, open Opener) {
	h := newRig(t, open, alloc.Options{})
	h.pool(t, "p", 4)
	h.segmentExpiring(t, "p", "0001", "0100", time.Now().Add(700*time.Millisecond))
	h.segment(t, "p", "0201", "0300")
	h.take(t, "p", 10)
	time.Sleep(time.Second)
	if got := h.take(t, "p", 1); got[0] != "0201" {
		t.Errorf("after expiry got %s, want 0201 from the next segment", got[0])
	}
	var gaps []numberd.Gap
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		if gaps, err = h.eng.Gaps(context.Background(), "p"); err != nil {
			t.Fatal(err)
		}
		if len(gaps) > 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(gaps) != 1 || gaps[0].Reason != numberd.GapExpired || gaps[0].Range.Start() != "0011" || gaps[0].Range.End() != "0100" {
		t.Errorf("gaps = %+v, want expired 0011..0100", gaps)
	}
	st, err := h.eng.Pool(context.Background(), "p")
	if err != nil {
		t.Fatal(err)
	}
	if st.Available != 99 || st.Issued != 11 {
		t.Errorf("available %d issued %d, want 99 and 11", st.Available, st.Issued)
	}
	segs, err := h.eng.Segments(context.Background(), "p")
	if err != nil || segs[0].State != numberd.StatusExhausted || segs[1].State != numberd.StatusActive {
		t.Errorf("segments after expiry = %+v, %v", segs, err)
	}
}

func retireSegment(t *testing.T, open Opener) {
	h := newRig(t, open, alloc.Options{})
	h.pool(t, "p", 4)
	first := h.segment(t, "p", "0001", "0100")
	h.segment(t, "p", "0201", "0300")
	h.take(t, "p", 5)
	for range 2 {
		s, err := h.eng.RetireSegment(context.Background(), "p", first.ID)
		if err != nil || s.State != numberd.StatusRetired {
			t.Fatalf("retire: state %q, %v", s.State, err)
		}
	}
	if got := h.take(t, "p", 1); got[0] != "0201" {
		t.Errorf("after retiring got %s, want 0201", got[0])
	}
	gaps, err := h.eng.Gaps(context.Background(), "p")
	if err != nil {
		t.Fatal(err)
	}
	if len(gaps) != 1 || gaps[0].Reason != numberd.GapRetired || gaps[0].Range.Start() != "0006" || gaps[0].Count() != 95 {
		t.Errorf("gaps = %+v, want one retired gap 0006..0100", gaps)
	}
	if _, err := h.eng.RetireSegment(context.Background(), "p", 999); !errors.Is(err, numberd.ErrSegmentNotFound) {
		t.Errorf("unknown segment: err = %v, want ErrSegmentNotFound", err)
	}
	h.restart(t)
	if got := h.take(t, "p", 1); got[0] != "0202" {
		t.Errorf("after restart got %s, want 0202: a retired segment stays retired", got[0])
	}
}

func statusCountsAddUp(t *testing.T, open Opener) {
	h := newRig(t, open, alloc.Options{})
	h.pool(t, "p", 4)
	h.segment(t, "p", "0001", "0100")
	h.segment(t, "p", "0201", "0300")
	h.segment(t, "p", "0401", "0450")
	h.take(t, "p", 30)
	st, err := h.eng.Pool(context.Background(), "p")
	if err != nil {
		t.Fatal(err)
	}
	if st.Available != 220 || st.Issued != 30 || st.Queued != 2 || st.Active == nil || st.Active.Next != 31 {
		t.Errorf("status = available %d issued %d queued %d active %+v", st.Available, st.Issued, st.Queued, st.Active)
	}
	pools, err := h.eng.Pools(context.Background())
	if err != nil || len(pools) != 1 || pools[0].ID != "p" {
		t.Errorf("Pools = %+v, %v", pools, err)
	}
	segs, err := h.eng.Segments(context.Background(), "p")
	if err != nil {
		t.Fatal(err)
	}
	states := []string{segs[0].State, segs[1].State, segs[2].State}
	sort.Strings(states)
	if segs[0].State != numberd.StatusActive || segs[1].State != numberd.StatusQueued || segs[2].State != numberd.StatusQueued {
		t.Errorf("states = %v", states)
	}
}
