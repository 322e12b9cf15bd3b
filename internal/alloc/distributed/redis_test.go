package distributed_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"
	"strings"
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
	"github.com/numberd/numberd/internal/alloc/alloctest"
	"github.com/numberd/numberd/internal/alloc/distributed"
	"github.com/numberd/numberd/internal/metrics"
	"github.com/numberd/numberd/internal/segment"
	"github.com/numberd/numberd/internal/store"
	"github.com/numberd/numberd/internal/testenv"
	"github.com/numberd/numberd/scripts/lua"
	testharness "github.com/numberd/numberd/test/harness" // harness here is embedded_test.go's type
)

// cluster is several distributed engines ("nodes") sharing one MySQL database and
// one Redis server, reached through a dialer the test can point elsewhere.
type cluster struct {
	dsn     string
	target  atomic.Value // host:port the nodes' Redis connections go to
	nodes   []*distributed.Engine
	stores  []*store.Store
	rdbs    []*redis.Client
	metrics []*metrics.Metrics
}

func newCluster(tb testing.TB, redisAddr string, nodes int, opts alloc.Options) *cluster {
	tb.Helper()
	c := &cluster{dsn: testenv.MySQLDSN(tb)}
	c.target.Store(redisAddr)
	for range nodes {
		c.addNode(tb, opts)
	}
	tb.Cleanup(func() {
		for i := range c.nodes {
			_ = c.nodes[i].Close(context.Background())
			_ = c.rdbs[i].Close()
			_ = c.stores[i].Close()
		}
	})
	return c
}

func (c *cluster) addNode(tb testing.TB, opts alloc.Options) {
	tb.Helper()
	st, err := store.OpenMySQL(context.Background(), c.dsn, alloctest.Quiet)
	if err != nil {
		tb.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{
		Addr: "redis", MaxRetries: 2, DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		Dialer: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, c.target.Load().(string))
		},
	})
	opts.Logger = alloctest.Quiet
	opts.Metrics = metrics.New()
	eng, err := distributed.Open(context.Background(), rdb, st, opts)
	if err != nil {
		tb.Fatal(err)
	}
	c.nodes, c.stores, c.rdbs = append(c.nodes, eng), append(c.stores, st), append(c.rdbs, rdb)
	c.metrics = append(c.metrics, opts.Metrics)
}

// restart closes node i and opens it again on the same Redis and database.
func (c *cluster) restart(tb testing.TB, i int, opts alloc.Options) {
	tb.Helper()
	if err := c.nodes[i].Close(context.Background()); err != nil {
		tb.Fatal(err)
	}
	_ = c.rdbs[i].Close()
	_ = c.stores[i].Close()
	c.addNode(tb, opts)
	last := len(c.nodes) - 1
	c.nodes[i], c.stores[i], c.rdbs[i], c.metrics[i] = c.nodes[last], c.stores[last], c.rdbs[last], c.metrics[last]
	c.nodes, c.stores, c.rdbs, c.metrics = c.nodes[:last], c.stores[:last], c.rdbs[:last], c.metrics[:last]
}

// pointTo sends the nodes' Redis connections to addr: new ones dial it, and the
// old server drops the ones it has.
func (c *cluster) pointTo(tb testing.TB, addr string) {
	tb.Helper()
	old := redis.NewClient(&redis.Options{Addr: c.target.Load().(string)})
	defer old.Close()
	c.target.Store(addr)
	if err := old.Do(context.Background(), "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		tb.Fatal(err)
	}
}

func (c *cluster) mustPool(tb testing.TB, id string, digits int, segs ...[2]string) []segment.Range {
	tb.Helper()
	if _, _, err := c.nodes[0].PutPool(context.Background(), id, numberd.PoolUpdate{Digits: &digits}); err != nil {
		tb.Fatal(err)
	}
	var out []segment.Range
	for _, s := range segs {
		r, err := segment.ParseRange(s[0], s[1], digits)
		if err != nil {
			tb.Fatal(err)
		}
		if _, _, err := c.nodes[0].LoadSegment(context.Background(), id, numberd.NewSegment{Range: r, Source: numberd.SourceManual}); err != nil {
			tb.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// ledger records every number handed out and fails the test on a second handout.
type ledger struct {
	tb   testing.TB
	mu   sync.Mutex
	seen map[string]bool
}

func newLedger(tb testing.TB) *ledger { return &ledger{tb: tb, seen: map[string]bool{}} }

func (l *ledger) add(a numberd.Allocation) {
	l.mu.Lock()
	defer l.mu.Unlock()
	nums := a.Numbers()
	for i, n := range nums {
		if l.seen[n] {
			l.tb.Errorf("number %s handed out twice", n)
		}
		l.seen[n] = true
		if i > 0 && nums[i-1] >= n {
			l.tb.Errorf("answer not ascending: %s after %s", n, nums[i-1])
		}
	}
}

func (l *ledger) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.seen)
}

// TestContract runs the engine contract against one distributed node.
func TestContract(t *testing.T) {
	alloctest.Run(t, func(tb testing.TB, opts alloc.Options) (alloctest.Engine, func() alloctest.Engine) {
		srv := testharness.StartRedis(tb, "redis")
		c := newCluster(tb, srv.Addr(), 1, opts)
		return c.nodes[0], func() alloctest.Engine {
			c.restart(tb, 0, opts)
			return c.nodes[0]
		}
	})
}

func TestDistributedSurvivesFlushAndRestart(t *testing.T) {
	srv := testharness.StartRedis(t, "redis")
	c := newCluster(t, srv.Addr(), 3, alloc.Options{LeaseMin: 20, LeaseMax: 200, CheckpointEvery: 100 * time.Millisecond})
	ranges := c.mustPool(t, "p", 20,
		[2]string{"24442000000000000001", "24442000000000020000"},
		[2]string{"24442000000000050001", "24442000000000070000"})
	l := newLedger(t)
	ctx := context.Background()

	var wg sync.WaitGroup
	var exhausted atomic.Int32
	stop := make(chan struct{})
	for w := range 24 {
		wg.Go(func() {
			node := c.nodes[w%len(c.nodes)]
			count := w%5 + 1
			for {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				a, err := node.Allocate(cctx, numberd.Request{Pool: "p", Count: count})
				cancel()
				switch {
				case err == nil:
					l.add(a)
				case errors.Is(err, numberd.ErrExhausted):
					if count == 1 {
						exhausted.Add(1)
						return
					}
					count = 1
				case errors.Is(err, numberd.ErrRedisUnavailable), errors.Is(err, context.DeadlineExceeded):
					time.Sleep(10 * time.Millisecond) // Redis is away for a moment
				default:
					t.Errorf("allocate: %v", err)
					return
				}
			}
		})
	}
	testenv.Eventually(t, 20*time.Second, "first 800 numbers", func() bool { return l.count() >= 800 })
	if err := srv.Client().FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	before := l.count()
	testenv.Eventually(t, 20*time.Second, "800 numbers after FLUSHALL", func() bool { return l.count() >= before+800 })
	srv.Restart()
	before = l.count()
	testenv.Eventually(t, 20*time.Second, "800 numbers after a restart", func() bool { return l.count() >= before+800 })
	wg.Wait()
	close(stop)
	if exhausted.Load() == 0 {
		t.Fatal("no caller saw the pool exhausted")
	}

	gaps, err := c.nodes[1].Gaps(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	var gapped int64
	for _, g := range gaps {
		if g.Reason != numberd.GapRecovery {
			t.Errorf("unexpected %s gap %s", g.Reason, g.Range)
		}
		gapped += g.Count()
		if g.Count() > 200 {
			t.Errorf("recovery gap %s holds %d numbers, more than the lease bound of 200", g.Range, g.Count())
		}
	}
	if len(gaps) < 2 {
		t.Errorf("%d recovery gaps after a flush and a restart, want at least 2", len(gaps))
	}
	var total int64
	for _, r := range ranges {
		total += r.Size()
	}
	handed := int64(l.count())
	// Every number is handed out or in a gap; numbers in a gap may have gone out
	// just before a loss, so together they cover the segments at least.
	if handed+gapped < total {
		t.Errorf("handed out %d + gaps %d < %d loaded: numbers went missing", handed, gapped, total)
	}
	for n := range l.seen {
		num, _ := segment.ParseNumber(n, 20)
		if !ranges[0].Contains(num) && !ranges[1].Contains(num) {
			t.Errorf("number %s is in no loaded segment", n)
		}
	}
	st, err := c.nodes[2].Pool(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if st.Available != 0 {
		t.Errorf("available = %d after draining", st.Available)
	}
	t.Logf("handed out %d, gaps %d numbers in %d ranges", handed, gapped, len(gaps))
}

func TestDistributedIdempotencyAcrossNodes(t *testing.T) {
	srv := testharness.StartRedis(t, "redis")
	c := newCluster(t, srv.Addr(), 2, alloc.Options{})
	c.mustPool(t, "p", 6, [2]string{"000001", "000100"})
	ctx := context.Background()
	key := &numberd.Idempotency{Scope: "s", Key: "k"}
	answers := make([]numberd.Allocation, 12)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Go(func() {
			a, err := c.nodes[i%2].Allocate(ctx, numberd.Request{Pool: "p", Count: 2, Idempotency: key})
			if err != nil {
				t.Error(err)
			}
			answers[i] = a
		})
	}
	wg.Wait()
	replays := 0
	for i, a := range answers {
		if n := a.Numbers(); len(n) != 2 || n[0] != answers[0].Numbers()[0] {
			t.Errorf("call %d got %v, call 0 %v", i, n, answers[0].Numbers())
		}
		if a.Replayed {
			replays++
		}
	}
	if replays != 11 {
		t.Errorf("%d replays of 12 calls with one key, want 11", replays)
	}
	if _, err := c.nodes[1].Allocate(ctx, numberd.Request{Pool: "p", Count: 3, Idempotency: key}); !errors.Is(err, numberd.ErrIdempotencyConflict) {
		t.Errorf("same key, other count: err = %v, want ErrIdempotencyConflict", err)
	}
	a, err := c.nodes[0].Allocate(ctx, numberd.Request{Pool: "p", Count: 1})
	if err != nil || a.Numbers()[0] != "000003" {
		t.Errorf("next number %v, %v; want 000003", a.Numbers(), err)
	}
}

// TestAbandonedKeyTakesNewNumbers: a key whose numbers the resolver abandoned
// (its call's answer was lost) is answered new numbers when used again, never
// those Redis still holds for it, which lie in an abandoned gap.
func TestAbandonedKeyTakesNewNumbers(t *testing.T) {
	srv := testharness.StartRedis(t, "redis")
	c := newCluster(t, srv.Addr(), 1, alloc.Options{})
	c.mustPool(t, "p", 6, [2]string{"000001", "000100"})
	ctx := context.Background()
	segs, err := c.stores[0].Segments(ctx, "p")
	if err != nil || len(segs) != 1 {
		t.Fatalf("segments %v, %v", segs, err)
	}
	// Redis's copy of the key's record holds 000011-000012; the store holds the
	// abandoned record the resolver keeps when it gives such numbers up.
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	if err := rdb.Set(ctx, "numberd:{p}:idem:s:k", fmt.Sprintf("count=2|%d:10-11", segs[0].ID), time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	held, err := c.stores[0].KeepIdempotencies(ctx, []store.IdempotencyRecord{{Pool: "p", Scope: "s", Key: "k", Fingerprint: "count=2", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}})
	if err != nil || !held[0].Abandoned() {
		t.Fatalf("abandoned record: %+v, %v", held, err)
	}
	key := &numberd.Idempotency{Scope: "s", Key: "k"}
	for i, want := range []bool{false, true} {
		a, err := c.nodes[0].Allocate(ctx, numberd.Request{Pool: "p", Count: 2, Idempotency: key})
		if err != nil {
			t.Fatal(err)
		}
		if got := a.Numbers(); !slices.Equal(got, []string{"000001", "000002"}) || a.Replayed != want {
			t.Errorf("use %d of the key: %v (replayed %v); want 000001..000002 (replayed %v)", i+1, got, a.Replayed, want)
		}
	}
}

// TestEmptiedQueueHeals: a pool's meta key whose queue lost its segments (a
// damaged field) while the seg key holds them must not answer exhausted for
// good: the next request reseeds, and numbers keep coming, none twice.
func TestEmptiedQueueHeals(t *testing.T) {
	srv := testharness.StartRedis(t, "redis")
	c := newCluster(t, srv.Addr(), 1, alloc.Options{})
	c.mustPool(t, "p", 6, [2]string{"000001", "999999"})
	ctx := context.Background()
	l := newLedger(t)
	a, err := c.nodes[0].Allocate(ctx, numberd.Request{Pool: "p", Count: 3})
	if err != nil {
		t.Fatal(err)
	}
	l.add(a)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	if err := rdb.HSet(ctx, "numberd:{p}:meta", "queue", "").Err(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		a, err := c.nodes[0].Allocate(ctx, numberd.Request{Pool: "p", Count: 3})
		if err != nil {
			t.Fatalf("allocation after the queue was emptied: %v", err)
		}
		l.add(a)
	}
}

func TestDistributedFailoverToAStaleCopy(t *testing.T) {
	primary := testharness.StartRedis(t, "primary")
	stale := testharness.StartRedis(t, "stale")
	const lease = 50
	c := newCluster(t, primary.Addr(), 2, alloc.Options{LeaseMin: lease, LeaseMax: lease})
	c.mustPool(t, "p", 6, [2]string{"000001", "010000"})
	ctx := context.Background()
	l := newLedger(t)
	take := func(n int) {
		t.Helper()
		for range n {
			a, err := c.nodes[0].Allocate(ctx, numberd.Request{Pool: "p", Count: 3})
			if err != nil {
				t.Fatal(err)
			}
			l.add(a)
		}
	}
	take(20)
	// The stale copy gets the pool's state as it is now, like a replica that stops
	// following here; the primary goes on.
	snap := primary.Client()
	copyTo := stale.Client()
	for _, k := range []string{"numberd:{p}:meta", "numberd:{p}:seg"} {
		dump, err := snap.Dump(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if err := copyTo.RestoreReplace(ctx, k, 0, dump).Err(); err != nil {
			t.Fatal(err)
		}
	}
	take(40)
	c.pointTo(t, stale.Addr())
	take(40)
	gaps, err := c.nodes[1].Gaps(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if len(gaps) != 1 || gaps[0].Reason != numberd.GapRecovery || gaps[0].Count() > 3*lease {
		t.Errorf("gaps after failover = %+v, want one recovery gap of at most a lease or so", gaps)
	}
}

func TestRedisUnavailableFailsFastAndRecovers(t *testing.T) {
	srv := testharness.StartRedis(t, "redis")
	c := newCluster(t, srv.Addr(), 1, alloc.Options{})
	c.mustPool(t, "p", 6, [2]string{"000001", "001000"})
	ctx := context.Background()
	if _, err := c.nodes[0].Allocate(ctx, numberd.Request{Pool: "p", Count: 1}); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := c.nodes[0].Allocate(rctx, numberd.Request{Pool: "p", Count: 1})
	cancel()
	if !errors.Is(err, numberd.ErrRedisUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("allocate with Redis down: err = %v, want unavailable", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("allocate with Redis down took %v", took)
	}
	var down *numberd.DownError
	if err := c.nodes[0].Ready(ctx); !errors.As(err, &down) || len(down.Stores) != 1 || down.Stores[0] != "redis" {
		t.Errorf("Ready = %v, want redis down", err)
	}
	srv.Start()
	testenv.Eventually(t, 10*time.Second, "allocation after Redis returns", func() bool {
		_, err := c.nodes[0].Allocate(ctx, numberd.Request{Pool: "p", Count: 1})
		return err == nil
	})
}

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

// TestRetriedAllocateCallAnswersAgain runs allocate.lua twice with one call id, as
// go-redis does when a reply is lost: the second run answers the first's numbers
// and takes nothing more.
func TestRetriedAllocateCallAnswersAgain(t *testing.T) {
	srv := testharness.StartRedis(t, "redis")
	c := newCluster(t, srv.Addr(), 1, alloc.Options{})
	c.mustPool(t, "p", 6, [2]string{"000001", "000100"})
	ctx := context.Background()
	if _, err := c.nodes[0].Allocate(ctx, numberd.Request{Pool: "p", Count: 1}); err != nil {
		t.Fatal(err) // seeds the state and reserves a lease
	}
	rdb := srv.Client()
	script := redis.NewScript(lua.Allocate)
	keys := []string{"numberd:{p}:meta", "numberd:{p}:seg", "numberd:{p}:memo:call-1"}
	args := []any{60, 86400, 0, 0, 1, 3, "3", "-", 0, 0}
	first, err := script.Run(ctx, rdb, keys, args...).Text()
	if err != nil {
		t.Fatal(err)
	}
	again, err := script.Run(ctx, rdb, keys, args...).Text()
	if err != nil {
		t.Fatal(err)
	}
	if first != again || !strings.Contains(first, " A ") {
		t.Fatalf("first answer %q, retried %q: want the same allocation", first, again)
	}
	used, err := rdb.HGet(ctx, "numberd:{p}:seg", "1:used").Int64()
	if err != nil || used != 4 {
		t.Errorf("used = %d, %v after 1 + 3 numbers, the retry taking none", used, err)
	}
	a, err := c.nodes[0].Allocate(ctx, numberd.Request{Pool: "p", Count: 1})
	if err != nil || a.Numbers()[0] != "000005" {
		t.Errorf("next number %v, %v; want 000005", a.Numbers(), err)
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

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
