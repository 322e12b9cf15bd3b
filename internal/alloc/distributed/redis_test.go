package distributed_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/alloc/alloctest"
	"github.com/numberd/numberd/internal/alloc/distributed"
	"github.com/numberd/numberd/internal/metrics"
	"github.com/numberd/numberd/internal/segment"
	"github.com/numberd/numberd/internal/store"
	"github.com/numberd/numberd/internal/testenv"
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

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
