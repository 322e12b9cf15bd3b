package nemesis_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/numberd/numberd/internal/testenv"
	"github.com/numberd/numberd/test/harness"
)

// nodeCount is how many numberd nodes share the stores.
const nodeCount = 3

// system is what the nemesis attacks: the nodes, Redis, MySQL and the proxies.
type system struct {
	redis      *redisPair
	mysqlProxy *harness.Proxy
	nodes      []*harness.Node
	admin      *harness.Client
}

// startSystem starts Redis (a primary and its replica), a fresh MySQL database,
// toxiproxies in front of both and the nodes, and creates the test pools with
// their segments. The harness objects report to a softTB: the nemesis drives them
// from goroutines of its own.
func startSystem(t *testing.T) *system {
	t.Helper()
	soft := softTB{t}
	s := &system{admin: harness.NewClient(8)}
	t.Cleanup(s.admin.Close)
	err := try(func() {
		// No delay before a diskless full sync: the failovers resync at once.
		sync := []string{"--repl-diskless-sync-delay", "0"}
		primary := harness.StartRedis(soft, "redis-primary", sync...)
		replica := harness.StartRedis(soft, "redis-replica", append(sync, "--replicaof", "127.0.0.1", strconv.Itoa(primary.Port))...)
		harness.WaitInSync(soft, primary, replica)
		s.redis = newRedisPair(primary, replica, harness.StartProxy(soft, primary.Addr()))
		t.Cleanup(s.redis.close)

		cfg, err := mysql.ParseDSN(testenv.MySQLDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		s.mysqlProxy = harness.StartProxy(soft, cfg.Addr)
		cfg.Addr = s.mysqlProxy.Addr()
		for i := range nodeCount {
			s.nodes = append(s.nodes, harness.StartNode(soft, harness.NodeConfig{
				Name:     fmt.Sprintf("node%d", i+1),
				RedisURL: "redis://" + s.redis.proxy.Addr() + "/0",
				MySQLDSN: cfg.FormatDSN(),
				Args:     []string{"--lease-max", strconv.Itoa(leaseMax)},
				Env:      []string{"NUMBERD_REQUEST_TIMEOUT=" + requestTimeout.String()},
			}))
		}
	})
	if err != nil {
		t.Fatalf("starting the system: %v", err)
	}
	ctx := context.Background()
	base := s.nodes[0].URL()
	for _, p := range testPools {
		if _, err := s.admin.PutPool(ctx, base, p.name, digits); err != nil {
			t.Fatal(err)
		}
		for _, seg := range p.segments {
			if _, err := s.admin.LoadSegment(ctx, base, p.name, p.number(seg.Lo), p.number(seg.Hi)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return s
}

// waitReady waits until every node's /readyz answers 200, and reports the nodes
// that did not within timeout.
func (s *system) waitReady(timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	var notReady []string
	for _, n := range s.nodes {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			r, err := s.admin.Do(ctx, http.MethodGet, n.URL()+"/readyz", nil)
			cancel()
			if err == nil && r.Status == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				what := fmt.Sprint(err)
				if r != nil {
					what = r.String()
				}
				notReady = append(notReady, n.Name()+": "+what)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return notReady
}

// probe allocates one number of every pool on every node, over and over until
// each has answered 200 or timeout has passed: after the faults are healed,
// service must resume by itself. Every call goes into h. It returns the pairs of
// node and pool that never answered 200.
func (s *system) probe(h *history, timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	var failed []string
	for _, n := range s.nodes {
		for _, p := range testPools {
			var last op
			for {
				last = call(h, s.admin, -1, n, p.name, 1, "", false)
				if last.Outcome == outOK || time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if last.Outcome != outOK {
				failed = append(failed, fmt.Sprintf("%s/%s: %s %d %s %s", n.Name(), p.name, last.Outcome, last.Status, last.Code, firstLine(last.Err)))
			}
		}
	}
	return failed
}

// poolState is what numberd says of a pool at the end: its segments with their
// cursors, and its gaps.
type poolState struct {
	Pool     string             `json:"pool"`
	Status   harness.PoolStatus `json:"status"`
	Segments []harness.Segment  `json:"segments"`
	Gaps     []harness.Gap      `json:"gaps"`
}

// readState reads every pool's status, segments and gaps through the first node
// that answers all three, trying for timeout.
func (s *system) readState(timeout time.Duration) ([]poolState, error) {
	deadline := time.Now().Add(timeout)
	var out []poolState
	for _, p := range testPools {
		for i := 0; ; i++ {
			node := s.nodes[i%len(s.nodes)]
			st, err := s.readPool(node, p.name)
			if err == nil {
				out = append(out, st)
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("reading pool %s: %v", p.name, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return out, nil
}

func (s *system) readPool(node *harness.Node, pool string) (poolState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st := poolState{Pool: pool}
	var err error
	if st.Status, err = s.admin.Pool(ctx, node.URL(), pool); err != nil {
		return st, err
	}
	if st.Segments, err = s.admin.Segments(ctx, node.URL(), pool); err != nil {
		return st, err
	}
	if st.Gaps, err = s.admin.Gaps(ctx, node.URL(), pool); err != nil {
		return st, err
	}
	// The status and the segments are two reads: with no client running they
	// must agree on the active segment.
	if a := st.Status.ActiveSegment; a != nil {
		for _, seg := range st.Segments {
			if seg.ID == a.ID && seg.State != "active" {
				return st, fmt.Errorf("pool %s: segment %s is %s in the list and active in the status", pool, seg.ID, seg.State)
			}
		}
	}
	return st, nil
}
