package distributed_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/segment"
	"github.com/numberd/numberd/internal/testenv"
	testharness "github.com/numberd/numberd/test/harness" // harness here is embedded_test.go's type
)

func TestDistributedExpiryByRedisClock(t *testing.T) {
	srv := testharness.StartRedis(t, "redis")
	c := newCluster(t, srv.Addr(), 2, alloc.Options{})
	ctx := context.Background()
	digits := 4
	if _, _, err := c.nodes[0].PutPool(ctx, "p", numberd.PoolUpdate{Digits: &digits}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		start, end string
		expires    time.Time
	}{{"0001", "0100", time.Now().Add(700 * time.Millisecond)}, {"0201", "0300", time.Time{}}} {
		r, _ := segment.ParseRange(s.start, s.end, digits)
		if _, _, err := c.nodes[0].LoadSegment(ctx, "p", numberd.NewSegment{Range: r, Source: numberd.SourceManual, ExpiresAt: s.expires}); err != nil {
			t.Fatal(err)
		}
	}
	if a, err := c.nodes[1].Allocate(ctx, numberd.Request{Pool: "p", Count: 5}); err != nil || a.Numbers()[0] != "0001" {
		t.Fatalf("before expiry: %v, %v", a.Numbers(), err)
	}
	time.Sleep(time.Second)
	gaps, err := c.nodes[0].Gaps(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if len(gaps) != 1 || gaps[0].Reason != numberd.GapExpired || gaps[0].Range.Start() != "0006" || gaps[0].Count() != 95 {
		t.Errorf("gaps after expiry = %+v, want expired 0006..0100", gaps)
	}
	if a, err := c.nodes[1].Allocate(ctx, numberd.Request{Pool: "p", Count: 1}); err != nil || a.Numbers()[0] != "0201" {
		t.Errorf("after expiry: %v, %v; want 0201", a.Numbers(), err)
	}
	segs, err := c.nodes[1].Segments(ctx, "p")
	if err != nil || segs[0].State != numberd.StatusExhausted || segs[1].State != numberd.StatusActive {
		t.Errorf("segments after expiry = %+v, %v", segs, err)
	}
}

// TestCloseUnderLoadAnswersEveryRequest closes a node while 64 callers keep
// allocating: every call returns, with numbers or ErrClosed, Close returns, and
// the calls refused took nothing: another node goes on right after the last
// number handed out.
func TestCloseUnderLoadAnswersEveryRequest(t *testing.T) {
	srv := testharness.StartRedis(t, "redis")
	c := newCluster(t, srv.Addr(), 1, alloc.Options{})
	c.mustPool(t, "p", 6, [2]string{"000001", "999999"})
	node := c.nodes[0]
	l := newLedger(t)
	const callers = 64
	var wg sync.WaitGroup
	var refused atomic.Int64
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				a, err := node.Allocate(context.Background(), numberd.Request{Pool: "p", Count: 1})
				if errors.Is(err, numberd.ErrClosed) {
					refused.Add(1)
					return
				}
				if err != nil {
					t.Errorf("allocate: %v", err)
					return
				}
				l.add(a)
			}
		}()
	}
	testenv.Eventually(t, 10*time.Second, "allocations under way", func() bool { return l.count() >= 2000 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := node.Close(ctx); err != nil {
		t.Fatalf("close under load: %v", err)
	}
	returned := make(chan struct{})
	go func() { wg.Wait(); close(returned) }()
	select {
	case <-returned:
	case <-time.After(3 * time.Second): // well within the waiters' own grace at close
		t.Fatalf("%d of %d callers still waiting 3 s after Close", callers-refused.Load(), callers)
	}
	if refused.Load() != callers {
		t.Errorf("%d callers were refused with ErrClosed, want all %d", refused.Load(), callers)
	}
	c.addNode(t, alloc.Options{})
	a, err := c.nodes[1].Allocate(context.Background(), numberd.Request{Pool: "p", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := a.Numbers()[0], fmt.Sprintf("%06d", l.count()+1); got != want {
		t.Errorf("after %d numbers and the close, the next node handed out %s, want %s", l.count(), got, want)
	}
}

// TestRetireRacesReseedsAndExtensions retires the active segment again and again
// while two nodes allocate and the pool's Redis state is lost now and then, so
// that reseeds and lease raises fall between a retire's step in Redis and its
// record in the store. A retired segment must answer retired, stay retired, and
// its gap must hold no number that was handed out.
func TestRetireRacesReseedsAndExtensions(t *testing.T) {
	srv := testharness.StartRedis(t, "redis")
	c := newCluster(t, srv.Addr(), 2, alloc.Options{LeaseMin: 20, LeaseMax: 200, CheckpointEvery: 50 * time.Millisecond})
	var segs [][2]string
	for i := range 60 {
		segs = append(segs, [2]string{fmt.Sprintf("%02d0001", i), fmt.Sprintf("%02d5000", i)})
	}
	c.mustPool(t, "p", 6, segs...)
	l := newLedger(t)
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 12 {
		wg.Go(func() {
			node := c.nodes[w%len(c.nodes)]
			for {
				select {
				case <-stop:
					return
				default:
				}
				a, err := node.Allocate(ctx, numberd.Request{Pool: "p", Count: w%3 + 1})
				switch {
				case err == nil:
					l.add(a)
				case errors.Is(err, numberd.ErrRedisUnavailable), errors.Is(err, numberd.ErrExhausted):
					time.Sleep(time.Millisecond)
				default:
					t.Errorf("allocate: %v", err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(25 * time.Millisecond):
			}
			_ = srv.Client().Del(ctx, "numberd:{p}:meta").Err()
		}
	})
	retired := map[int64]bool{}
	for i := 0; len(retired) < 40 && i < 2000; i++ {
		node := c.nodes[i%len(c.nodes)]
		st, err := node.Segments(ctx, "p")
		if err != nil {
			t.Fatal(err)
		}
		var active *numberd.SegmentStatus
		for _, s := range st {
			if s.State == numberd.StatusActive && !retired[s.ID] {
				active = &s
				break
			}
		}
		if active == nil || active.Used == 0 && i%2 == 0 {
			time.Sleep(time.Duration(i%7) * time.Millisecond)
			continue
		}
		got, err := node.RetireSegment(ctx, "p", active.ID)
		if errors.Is(err, numberd.ErrRedisUnavailable) {
			continue
		}
		if err != nil {
			t.Fatalf("retire %d: %v", active.ID, err)
		}
		if got.State != numberd.StatusRetired {
			t.Errorf("retire %d answered state %s", active.ID, got.State)
		}
		retired[active.ID] = true
	}
	close(stop)
	wg.Wait()
	if len(retired) < 40 {
		t.Fatalf("retired %d segments, want 40", len(retired))
	}
	st, err := c.nodes[0].Segments(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if retired[s.ID] && s.State != numberd.StatusRetired {
			t.Errorf("segment %d was retired and now is %s", s.ID, s.State)
		}
	}
	gaps, err := c.nodes[1].Gaps(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	inGap := 0
	for n := range l.seen {
		num, _ := segment.ParseNumber(n, 6)
		for _, g := range gaps {
			if g.Reason != numberd.GapRecovery && g.Range.Contains(num) {
				inGap++
				if inGap <= 5 {
					t.Errorf("number %s was handed out and lies in the %s gap %s", n, g.Reason, g.Range)
				}
			}
		}
	}
	if inGap > 0 {
		t.Errorf("%d numbers handed out lie in retired or expired gaps", inGap)
	}
	t.Logf("handed out %d numbers, retired %d segments, %d gaps", l.count(), len(retired), len(gaps))
}

// The allocate calls of pools waiting at once share a round trip. Redis forgets
// its scripts (SCRIPT FLUSH, six times): the calls a pipeline carried are refused
// unrun and go again alone. Every number still goes out once, and every request
// gets its numbers.
func TestPoolsShareRoundTrips(t *testing.T) {
	srv := testharness.StartRedis(t, "redis")
	c := newCluster(t, srv.Addr(), 1, alloc.Options{})
	const pools = 24
	for i := range pools {
		c.mustPool(t, fmt.Sprintf("p%02d", i), 8, [2]string{"10000001", "10099999"})
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ledgers := make([]*ledger, pools)
	for i := range ledgers {
		ledgers[i] = newLedger(t)
	}
	calls := c.metrics[0].RedisCalls.WithLabelValues("allocate")
	callsBefore, tripsBefore := testutil.ToFloat64(calls), testutil.ToFloat64(c.metrics[0].RedisRoundTrips)
	var wg sync.WaitGroup
	for g := range 4 * pools {
		wg.Go(func() {
			pool := g % pools
			for k := range 60 {
				if g == 0 && k%10 == 5 {
					if err := rdb.ScriptFlush(context.Background()).Err(); err != nil {
						t.Error(err)
					}
				}
				req := numberd.Request{Pool: fmt.Sprintf("p%02d", pool), Count: 1 + k%3}
				if k%7 == 0 {
					req.Idempotency = &numberd.Idempotency{Scope: "s", Key: fmt.Sprintf("%d-%d", g, k)}
				}
				a, err := c.nodes[0].Allocate(context.Background(), req)
				if err != nil {
					t.Error(err)
					return
				}
				if a.Count() != int64(req.Count) {
					t.Errorf("asked %d numbers, got %d", req.Count, a.Count())
				}
				ledgers[pool].add(a)
			}
		})
	}
	wg.Wait()
	total := 0
	for _, l := range ledgers {
		total += l.count()
	}
	if want := 4 * pools * (20*1 + 20*2 + 20*3); total != want {
		t.Errorf("handed out %d numbers, asked %d", total, want)
	}
	made := testutil.ToFloat64(calls) - callsBefore
	trips := testutil.ToFloat64(c.metrics[0].RedisRoundTrips) - tripsBefore
	t.Logf("%.0f allocate calls in %.0f round trips", made, trips)
	if trips == 0 || made < 1.5*trips {
		t.Errorf("%.0f allocate calls in %.0f round trips: the pools' calls did not share them", made, trips)
	}
	// Every round trip is timed once. A round trip that ran nothing (all its
	// calls out of time before it left) is neither counted nor timed.
	if timed := histogramCount(t, c.metrics[0].RedisRoundTripSeconds); float64(timed) != testutil.ToFloat64(c.metrics[0].RedisRoundTrips) {
		t.Errorf("%d round trips timed, %.0f counted", timed, testutil.ToFloat64(c.metrics[0].RedisRoundTrips))
	}
}

func histogramCount(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// Pools reads the pools a few at a time: the listing must still come in id order,
// each entry the status of its own pool, while allocations run.
func TestPoolsListsEveryPoolInOrderWhileAllocating(t *testing.T) {
	srv := testharness.StartRedis(t, "redis")
	c := newCluster(t, srv.Addr(), 1, alloc.Options{})
	const pools = 30
	ids := make([]string, pools)
	for i := range pools {
		// Created out of order, so that the listing's order is the store's, not
		// the order of creation.
		ids[i] = fmt.Sprintf("p%02d", (i*7)%pools)
		c.mustPool(t, ids[i], 6, [2]string{fmt.Sprintf("%02d0001", i), fmt.Sprintf("%02d1000", i)})
	}
	ctx := context.Background()
	for i, id := range ids {
		for range i % 5 {
			if _, err := c.nodes[0].Allocate(ctx, numberd.Request{Pool: id, Count: 2}); err != nil {
				t.Fatal(err)
			}
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := c.nodes[0].Allocate(ctx, numberd.Request{Pool: "p00", Count: 1}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for range 5 {
		got, err := c.nodes[0].Pools(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != pools {
			t.Fatalf("Pools listed %d pools, want %d", len(got), pools)
		}
		for i, st := range got {
			if want := fmt.Sprintf("p%02d", i); st.ID != want {
				t.Fatalf("Pools[%d] is %s, want %s", i, st.ID, want)
			}
			if st.ID == "p00" {
				continue // allocating meanwhile
			}
			k := slices.Index(ids, st.ID)
			if want := int64(2 * (k % 5)); st.Issued != want || st.Available != 1000-want {
				t.Errorf("%s: issued %d, available %d; want %d, %d", st.ID, st.Issued, st.Available, want, 1000-want)
			}
		}
	}
	close(stop)
	wg.Wait()

	// The listing answers what Pool answers for each pool, recovery gaps
	// included: a flush makes the next allocations reseed their pools.
	if err := srv.Client().FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids[:10] {
		if _, err := c.nodes[0].Allocate(ctx, numberd.Request{Pool: id, Count: 1}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.nodes[0].Pools(ctx)
	if err != nil {
		t.Fatal(err)
	}
	recovering := 0
	for _, st := range got {
		one, err := c.nodes[0].Pool(ctx, st.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(st, one) {
			t.Errorf("%s: Pools says %+v, Pool says %+v", st.ID, st, one)
		}
		if a := st.Active; a != nil && a.Next-a.Range.Lo > a.Used {
			recovering++
		}
	}
	if recovering == 0 {
		t.Error("no pool shows recovered numbers after the flush: the comparison did not cover them")
	}

	// Without Redis, the listing answers from the store, as Pool does.
	srv.Kill()
	got, err = c.nodes[0].Pools(ctx)
	if err != nil || len(got) != pools {
		t.Fatalf("Pools without Redis: %d pools, %v; want %d, nil", len(got), err, pools)
	}
	for _, st := range got[:1] {
		if one, err := c.nodes[0].Pool(ctx, st.ID); err != nil || !reflect.DeepEqual(st, one) {
			t.Errorf("%s without Redis: Pools says %+v, Pool says %+v (%v)", st.ID, st, one, err)
		}
	}
	if _, err := c.nodes[0].Pools(canceled()); err == nil {
		t.Error("Pools with a canceled context answered without an error")
	}
}
