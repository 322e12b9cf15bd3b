// The regression tests of the holes a fault hunt with real processes found in
// "never twice, every number accounted for": a Redis failed over and back, keys
// restored in place, Redis paused past the request timeout, one key lost,
// idempotency records lost with Redis, and a store rolled back. Each runs against
// throwaway Redis servers and a fresh MariaDB database:
//
//	GOTESTFLAGS='-run TestHole -v' make test
//	scripts/testenv.sh go test -race -count=1 -run TestHole -v ./test/distributed/

package distributed_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/numberd/numberd/test/harness"
)

// holeLease is the --lease-max of these tests' nodes: small, so that a stale lease
// is used up, and an extension meets the disagreement, within a few hundred
// numbers.
const holeLease = 500

// holeTimeout is --request-timeout where a test needs it short.
const holeTimeout = time.Second

// startHoleNodes starts n distributed nodes on redisURL and dsn (see
// startHoleNode), named node1, node2 …
func startHoleNodes(t *testing.T, n int, redisURL, dsn string, timeout time.Duration) []*harness.Node {
	t.Helper()
	var nodes []*harness.Node
	for i := range n {
		nodes = append(nodes, startHoleNode(t, fmt.Sprintf("node%d", i+1), redisURL, dsn, timeout))
	}
	return nodes
}

// startHoleNode starts a distributed node on redisURL and dsn with --lease-max
// holeLease and, unless timeout is 0, --request-timeout timeout.
func startHoleNode(t *testing.T, name, redisURL, dsn string, timeout time.Duration) *harness.Node {
	t.Helper()
	args := []string{"--lease-max", strconv.Itoa(holeLease)}
	if timeout > 0 {
		args = append(args, "--request-timeout", timeout.String())
	}
	return harness.StartNode(t, harness.NodeConfig{Name: name, RedisURL: redisURL, MySQLDSN: dsn, Args: args})
}

// holeRig is what each test here starts from: two nodes on a Redis server of the
// test's own and a fresh database, a client, a pool of one segment and a ledger.
type holeRig struct {
	rds   *harness.Redis
	dsn   string
	nodes []*harness.Node
	c     *harness.Client
	pool  string
	seg   span
	l     *harness.Ledger
}

// newHoleRig starts two nodes on rds (see startHoleNodes) and creates pool.
func newHoleRig(t *testing.T, rds *harness.Redis, pool string, timeout time.Duration) *holeRig {
	t.Helper()
	r := &holeRig{rds: rds, dsn: mysqlDSN(t), c: harness.NewClient(16), pool: pool, seg: span{"24442", 1, 1_000_000}, l: harness.NewLedger(t)}
	t.Cleanup(r.c.Close)
	r.nodes = startHoleNodes(t, 2, "redis://"+rds.Addr()+"/0", r.dsn, timeout)
	mustPool(t, r.c, r.nodes[0], pool, r.seg)
	return r
}

// load starts eight clients on both nodes and waits for their first 1000 numbers.
func (r *holeRig) load(t *testing.T) *load {
	t.Helper()
	ld := startLoad(t, r.c, r.l, loadOpts{pools: []string{r.pool}, nodes: r.nodes, workers: 8, maxCount: 5})
	ld.waitFor(1000, 30*time.Second, "the first 1000 numbers")
	return ld
}

// allocate allocates count numbers rounds times, on the nodes in turn.
func (r *holeRig) allocate(t *testing.T, rounds, count int) []string {
	t.Helper()
	var got []string
	for i := range rounds {
		got = append(got, mustAllocate(t, r.c, r.l, r.nodes[i%2], r.pool, count)...)
	}
	return got
}

// gaps lists the pool's gaps, checking their counts.
func (r *holeRig) gaps(t *testing.T) []harness.Gap {
	t.Helper()
	gaps := gapsOf(t, r.c, r.nodes, r.pool)
	checkGapCounts(t, gaps, []span{r.seg})
	return gaps
}

// must fails t on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// highest is the highest number in l.
func highest(l *harness.Ledger) string {
	nums := l.Numbers()
	if len(nums) == 0 {
		return ""
	}
	return nums[len(nums)-1]
}

// checkAbove fails t for each of nums at or below floor, or inside gaps: numbers
// handed out after Redis went back must come from above everything handed out
// before, and never from a gap.
func checkAbove(t *testing.T, nums []string, floor string, gaps []harness.Gap) {
	t.Helper()
	var below, gapped []string
	for _, n := range nums {
		if n <= floor {
			below = append(below, n)
		}
		if inGap(gaps, n) {
			gapped = append(gapped, n)
		}
	}
	if len(below) > 0 {
		t.Errorf("%d of the %d numbers handed out after the rollback are not above %s, handed out before it: %v",
			len(below), len(nums), floor, below[:min(len(below), 5)])
	}
	if len(gapped) > 0 {
		t.Errorf("%d of the %d numbers handed out after the rollback lie in a gap: %v", len(gapped), len(nums), gapped[:min(len(gapped), 5)])
	}
}

// TestHoleFailoverAndBack (finding 1): Redis fails over to a replica that stopped
// following (B, REPLICAOF NO ONE) while the nodes go on allocating on A, then A
// follows B and is promoted again (what Sentinel does failing over and back). A's
// run id is unchanged but its data is B's older copy, under a new replication id:
// the pool must be reseeded above everything handed out, not serve its old lease
// again.
func TestHoleFailoverAndBack(t *testing.T) {
	ctx := context.Background()
	a := harness.StartRedis(t, "a", "--repl-diskless-sync-delay", "0")
	b := harness.StartReplica(t, "b", a)
	r := newHoleRig(t, a, "fb", 0)
	onCopy := len(r.allocate(t, 10, 5))
	runID, _ := a.RunID(ctx)
	replID, _ := a.ReplicationID(ctx)
	var onA int
	must(t, harness.FailoverAndBack(ctx, a, b, func() error { onA = len(r.allocate(t, 20, 5)); return nil }))
	runAfter, _ := a.RunID(ctx)
	replAfter, _ := a.ReplicationID(ctx)
	t.Logf("A's run id %s → %s, replication id %s → %s", runID, runAfter, replID, replAfter)

	floor, dupsBefore := highest(r.l), r.l.Duplicates()
	after := r.allocate(t, 40, 5)
	checkAbove(t, after, floor, r.gaps(t))
	t.Logf("failover and back: %d numbers handed out when B was promoted, %d more on A after it; "+
		"after A went back to B's copy: %d numbers, %d of them handed out again",
		onCopy, onA, len(after), r.l.Duplicates()-dupsBefore)
	logReseeds(t, r.nodes)
}

// TestHoleKeyRestore (finding 2): every key of a pool is dumped (DUMP) under load
// from two nodes, the load goes on past any lease the dump held, and the dump is
// written back into the same live server (RESTORE … REPLACE): no id changes, the
// counters go back. No number may be handed out again, whether one node or both
// allocate after the restore.
func TestHoleKeyRestore(t *testing.T) {
	t.Run("one node after", func(t *testing.T) { keyRestore(t, false) })
	t.Run("load from both after", func(t *testing.T) { keyRestore(t, true) })
}

func keyRestore(t *testing.T, loadAfter bool) {
	ctx := context.Background()
	r := newHoleRig(t, harness.StartRedis(t, "redis"), "kr", 0)
	ld := r.load(t)
	dump, err := r.rds.DumpKeys(ctx, "numberd:{kr}:*")
	must(t, err)
	atDump := r.l.Count()
	ld.waitFor(atDump+3*holeLease, 30*time.Second, "numbers past the dump's lease")
	if !loadAfter {
		ld.Stop()
	}
	floor, dupsBefore, before := highest(r.l), r.l.Duplicates(), r.l.Count()
	must(t, r.rds.RestoreKeys(ctx, dump))
	var after []string
	if loadAfter {
		ld.waitFor(before+3*holeLease, 30*time.Second, "numbers after the restore")
		ld.Stop()
	} else {
		for range 100 {
			after = append(after, mustAllocate(t, r.c, r.l, r.nodes[0], "kr", 5)...)
		}
	}
	checkAbove(t, after, floor, r.gaps(t))
	t.Logf("key restore: dumped %d keys %v at %d numbers; restored at %d; %d numbers handed out after the restore, %d of them again; 503 unavailable %d",
		len(dump), dumpKinds(dump), atDump, before, r.l.Count()-before+r.l.Duplicates()-dupsBefore, r.l.Duplicates()-dupsBefore, ld.unavailable.Load())
	logReseeds(t, r.nodes)
}

// dumpKinds counts a dump's keys by kind (meta, seg, memo, idem, lock), for logs.
func dumpKinds(d harness.KeyDump) map[string]int {
	out := map[string]int{}
	for _, k := range d.Names() {
		_, rest, _ := strings.Cut(k, "}:")
		kind, _, _ := strings.Cut(rest, ":")
		out[kind]++
	}
	return out
}

// TestHoleRedisPausedPastTimeout (finding 3): Redis is stopped (SIGSTOP) longer
// than the request timeout while two nodes serve a load, then continued. The
// allocate calls the nodes gave up on run when Redis resumes and consume numbers:
// afterwards every number below the pool's cursor must have reached a caller or lie
// in a gap (reason abandoned), and no 503 answered during the pause may claim that
// nothing was consumed: its outcome was unknown.
func TestHoleRedisPausedPastTimeout(t *testing.T) {
	ctx := context.Background()
	r := newHoleRig(t, harness.StartRedis(t, "redis"), "pz", holeTimeout)
	ld := r.load(t)
	idle := startHoleNode(t, "node3", "redis://"+r.rds.Addr()+"/0", r.dsn, holeTimeout)
	mustAllocate(t, r.c, r.l, idle, "pz", 1)

	must(t, r.rds.Pause())
	paused := time.Now()
	var (
		mu     sync.Mutex
		probes []*harness.Response
		wg     sync.WaitGroup
	)
	defer wg.Wait()
	// A plain probe on each loaded node, and a keyed one on a third node without
	// load, so that it is sent at once too, with a key not used again until the
	// end: a caller that gave up. What a keyed call took while its answer was
	// lost is abandoned like any other, not kept for a retry that may never come.
	const probeKey = "pz-probe"
	targets := append(slices.Clone(r.nodes), idle)
	for _, n := range targets {
		keyed := n == idle
		wg.Go(func() {
			var header []string
			if keyed {
				header = []string{"Idempotency-Key", probeKey}
			}
			resp, err := r.c.Do(ctx, http.MethodPost, n.URL()+"/v1/pools/pz/numbers", map[string]int{"count": 3}, header...)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				resp = &harness.Response{Body: []byte(err.Error())}
			} else if resp.Status == http.StatusOK {
				r.l.Record(n.Name(), resp.Strings("numbers"))
			}
			probes = append(probes, resp)
		})
	}
	// Resumed once the probes were answered, and no sooner than four request
	// timeouts, past the engine's own bound on a Redis call (3 s when this was
	// written): the calls sent meanwhile were given up on, their replies lost.
	eventually(t, 30*time.Second, "the probes' answers during the pause", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(probes) == len(targets) && time.Since(paused) > 4*holeTimeout
	})
	must(t, r.rds.Resume())
	pause := time.Since(paused)
	resumedAt := r.l.Count()
	ld.waitFor(resumedAt+1000, 30*time.Second, "1000 numbers after the resume")
	ld.Stop()

	for _, resp := range probes {
		switch {
		case resp.Status == http.StatusOK:
		case resp.Status != http.StatusServiceUnavailable:
			t.Errorf("allocation during the pause: %s, want 200 or 503", resp)
		case strings.Contains(fmt.Sprint(resp.JSON["detail"]), "nothing was consumed"):
			t.Errorf("503 during the pause claims %q: the call's outcome was unknown", resp.JSON["detail"])
		default:
			t.Logf("503 during the pause: %q", resp.JSON["detail"])
		}
	}

	// Every number below the cursor reached a caller or lies in a gap; the gaps
	// of abandoned calls may be recorded a moment after Redis answers again.
	var missing []string
	var cursor string
	var gaps []harness.Gap
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := r.c.Pool(ctx, r.nodes[0].URL(), "pz")
		must(t, err)
		if st.ActiveSegment == nil {
			t.Fatalf("pool pz has no active segment: %+v", st)
		}
		cursor, gaps, missing = st.ActiveSegment.Next, r.gaps(t), nil
		for v := r.seg.lo; r.seg.number(v) < cursor; v++ {
			if n := r.seg.number(v); !r.l.Has(n) && !inGap(gaps, n) {
				missing = append(missing, n)
			}
		}
		if int64(len(missing)) <= ld.inDoubt.Load() || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if int64(len(missing)) > ld.inDoubt.Load() {
		t.Errorf("%d numbers below the cursor %s reached no caller and lie in no gap (first %s, last %s); %d in doubt",
			len(missing), cursor, missing[0], missing[len(missing)-1], ld.inDoubt.Load())
	}
	sizes, gapped := gapSizes(gaps)
	t.Logf("paused %v: %d numbers handed out (%d before the resume); 503 unavailable %d; gaps %v (total %d); cursor %s",
		pause.Round(time.Millisecond), r.l.Count(), resumedAt, ld.unavailable.Load(), sizes, gapped, cursor)

	// The probe's key, used again now, answers numbers no one else got and no gap
	// holds, and the same numbers twice.
	var first []string
	for range 2 {
		resp, err := r.c.Do(ctx, http.MethodPost, idle.URL()+"/v1/pools/pz/numbers", map[string]int{"count": 3}, "Idempotency-Key", probeKey)
		must(t, err)
		if resp.Status != http.StatusOK {
			t.Fatalf("retry of key %s: %s", probeKey, resp)
		}
		nums := resp.Strings("numbers")
		if first == nil {
			first = nums
			r.l.Record(idle.Name(), nums)
		} else if !slices.Equal(nums, first) {
			t.Errorf("key %s answered %v, then %v", probeKey, first, nums)
		}
	}
	gaps = r.gaps(t)
	for _, num := range first {
		if inGap(gaps, num) {
			t.Errorf("key %s was answered %s, which lies in a gap", probeKey, num)
		}
	}
	if d := r.l.Duplicates(); d > 0 {
		t.Errorf("%d numbers handed out twice", d)
	}
}

// TestHoleLostSegKey (finding 4): one of a pool's keys is lost (DEL
// numberd:{p}:seg, what the eviction of one key does) while its meta survives. The
// next request must succeed, or at worst answer 503 within the request timeout
// and the one after succeed: the pool heals within one request timeout, with a
// bounded number of Redis calls.
func TestHoleLostSegKey(t *testing.T) {
	ctx := context.Background()
	r := newHoleRig(t, harness.StartRedis(t, "redis"), "lk", holeTimeout)
	r.allocate(t, 20, 5)
	redisCalls := func() float64 {
		var sum float64
		for _, n := range r.nodes {
			m, err := r.c.Metrics(ctx, n.URL())
			must(t, err)
			sum += m.Sum("numberd_redis_calls_total")
		}
		return sum
	}
	callsBefore := redisCalls()
	evalBefore, _ := r.rds.CommandCalls(ctx, "evalsha")
	if n, err := r.rds.DelKeys(ctx, "numberd:{lk}:seg"); err != nil || n != 1 {
		t.Fatalf("DEL numberd:{lk}:seg: %d, %v", n, err)
	}

	// A 503 may take the request timeout and a little: 10 %, and the race
	// detector's slack.
	bound := holeTimeout + holeTimeout/10 + 200*time.Millisecond
	var took []time.Duration
	healed := false
	for attempt := range 2 {
		nums, resp, d := allocateTimed(t, r.c, r.nodes[0], "lk", 5)
		took = append(took, d)
		if resp.Status == http.StatusOK {
			r.l.Record(r.nodes[0].Name(), nums)
			healed = true
			break
		}
		if attempt == 1 {
			t.Errorf("allocation after the lost key and a first 503: %s after %v, want 200", resp, d)
			break
		}
		if resp.Status != http.StatusServiceUnavailable {
			t.Errorf("allocation after the lost key: %s, want 200 or at worst 503", resp)
		}
		if d > bound {
			t.Errorf("allocation after the lost key answered %d after %v, want 200, or a 503 within %v", resp.Status, d, bound)
		}
	}
	calls := redisCalls() - callsBefore
	evalAfter, _ := r.rds.CommandCalls(ctx, "evalsha")
	if calls >= 50 {
		t.Errorf("the requests after the lost key made %.0f Redis script calls, want fewer than 50", calls)
	}
	if healed {
		// The other node heals as well, and both go on.
		for i := range 10 {
			node := r.nodes[(i+1)%2]
			if nums, resp, d := allocateTimed(t, r.c, node, "lk", 5); resp.Status != http.StatusOK || d > bound {
				t.Errorf("allocation %d after healing on %s: %s after %v", i+1, node.Name(), resp, d)
			} else {
				r.l.Record(node.Name(), nums)
			}
		}
	}
	t.Logf("lost seg key: answers took %v; %.0f script calls counted by the nodes, %d EVALSHA run by Redis", took, calls, evalAfter-evalBefore)
	logReseeds(t, r.nodes)
}

// TestHoleIdempotencyAcrossRedisLoss (finding 5): a key's numbers are replayed for
// 24 h in both modes, so after Redis loses everything (FLUSHALL, or a restart
// without persistence) a replay of the key on any node answers the same numbers,
// marked Idempotent-Replayed, and takes none.
func TestHoleIdempotencyAcrossRedisLoss(t *testing.T) {
	ctx := context.Background()
	r := newHoleRig(t, harness.StartRedis(t, "redis"), "ik", 0)
	allocateKey := func(node *harness.Node, key string) (*harness.Response, []string) {
		t.Helper()
		resp, err := r.c.Do(ctx, http.MethodPost, node.URL()+"/v1/pools/ik/numbers", map[string]int{"count": 3}, "Idempotency-Key", key)
		must(t, err)
		if resp.Status != http.StatusOK {
			t.Fatalf("allocate with key %s on %s: %s", key, node.Name(), resp)
		}
		return resp, resp.Strings("numbers")
	}
	checkReplay := func(node *harness.Node, key string, want []string, what string) {
		t.Helper()
		resp, got := allocateKey(node, key)
		if strings.Join(got, ",") != strings.Join(want, ",") || resp.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("replay of key %s on %s after %s: %v (Idempotent-Replayed %q), want %v (true)",
				key, node.Name(), what, got, resp.Header.Get("Idempotent-Replayed"), want)
			r.l.Record(node.Name()+" replay", got)
		}
	}
	keyed := map[string][]string{}
	for i, key := range []string{"invoice-1", "invoice-2"} {
		_, nums := allocateKey(r.nodes[i], key)
		r.l.Record(r.nodes[i].Name(), nums)
		keyed[key] = nums
		mustAllocate(t, r.c, r.l, r.nodes[i], "ik", 5)
	}
	checkReplay(r.nodes[1], "invoice-1", keyed["invoice-1"], "nothing")

	must(t, r.rds.FlushAll(ctx))
	checkReplay(r.nodes[0], "invoice-1", keyed["invoice-1"], "FLUSHALL")
	checkReplay(r.nodes[1], "invoice-2", keyed["invoice-2"], "FLUSHALL")

	_, nums := allocateKey(r.nodes[0], "invoice-3")
	r.l.Record(r.nodes[0].Name(), nums)
	keyed["invoice-3"] = nums
	r.rds.Restart()
	for i, key := range []string{"invoice-1", "invoice-2", "invoice-3"} {
		checkReplay(r.nodes[i%2], key, keyed[key], "a restart of Redis without persistence")
	}
	mustAllocate(t, r.c, r.l, r.nodes[0], "ik", 5)
}

// TestHoleStoreRolledBack (finding 6): MySQL is restored from a backup (the
// segments' reserved_hi and next written back to what they were earlier) while
// Redis holds cursors above them. The nodes must not reseed below what Redis
// shows: no number may be handed out again.
func TestHoleStoreRolledBack(t *testing.T) {
	ctx := context.Background()
	r := newHoleRig(t, harness.StartRedis(t, "redis"), "rb", 0)
	db, err := sql.Open("mysql", r.dsn)
	must(t, err)
	defer db.Close()
	ld := r.load(t)

	type marks struct{ id, reservedHi, next int64 }
	var backup []marks
	rows, err := db.QueryContext(ctx, "SELECT id, reserved_hi, next FROM segments WHERE pool = ?", "rb")
	must(t, err)
	for rows.Next() {
		var m marks
		must(t, rows.Scan(&m.id, &m.reservedHi, &m.next))
		backup = append(backup, m)
	}
	must(t, rows.Err())
	atBackup := r.l.Count()
	ld.waitFor(atBackup+3*holeLease, 30*time.Second, "numbers past the backup's marks")

	floor, dupsBefore, before := highest(r.l), r.l.Duplicates(), r.l.Count()
	for _, m := range backup {
		if _, err := db.ExecContext(ctx, "UPDATE segments SET reserved_hi = ?, next = ? WHERE id = ?", m.reservedHi, m.next, m.id); err != nil {
			t.Fatal(err)
		}
	}
	ld.waitFor(before+4*holeLease, 30*time.Second, "numbers after the store was rolled back")
	ld.Stop()
	gaps := r.gaps(t)
	t.Logf("store rolled back to its marks %+v (taken at %d numbers) at %d numbers (highest %s); %d numbers handed out after, %d of them again; gaps %d",
		backup, atBackup, before, floor, r.l.Count()-before+r.l.Duplicates()-dupsBefore, r.l.Duplicates()-dupsBefore, len(gaps))
	logReseeds(t, r.nodes)
}
