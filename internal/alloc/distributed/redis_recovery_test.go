package distributed_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/segment"
	"github.com/numberd/numberd/internal/testenv"
	"github.com/numberd/numberd/scripts/lua"
	testharness "github.com/numberd/numberd/test/harness" // harness here is embedded_test.go's type
)

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
	// A loss skips the lease at most (200); the gap starts below the checkpoint
	// by what the memos in place held: a node's last answered call, whose
	// numbers (8 callers of 5 at most) went out just before the loss.
	const bound = 200 + 3*8*5
	var gapped int64
	for _, g := range gaps {
		if g.Reason != numberd.GapRecovery {
			t.Errorf("unexpected %s gap %s", g.Reason, g.Range)
		}
		gapped += g.Count()
		if g.Count() > bound {
			t.Errorf("recovery gap %s holds %d numbers, more than the lease and the calls in flight, %d", g.Range, g.Count(), bound)
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
	keys := []string{"numberd:{p}:meta", "numberd:{p}:seg"}
	args := []any{"call-1", 86400, 0, 0, 1, 3, "3", "-", 0, 0}
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
