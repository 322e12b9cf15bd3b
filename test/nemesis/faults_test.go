package nemesis_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/numberd/numberd/test/harness"
)

// kind is a kind of fault.
type kind string

// The node lane's faults.
const (
	// nodeKill: kill -9 a node, restart it after the hold (retrying, as a
	// supervisor would, while a store it needs at start is down).
	nodeKill kind = "node-kill"
	// nodePause: SIGSTOP a node, SIGCONT after the hold; a hold past
	// clientTimeout makes the calls it holds break off.
	nodePause kind = "node-pause"
)

// The store lane's faults.
const (
	redisFlushAll kind = "redis-flushall" // FLUSHALL
	redisRestart  kind = "redis-restart"  // kill -9 the primary, start it empty after the hold
	// redisFailover: detach the replica, let it lag, point numberd at it (a
	// failover to a lagging replica), and after the hold fail back as Sentinel
	// does: the old primary resyncs from the new one and is promoted again.
	redisFailover kind = "redis-failover"
	// redisRollback: detach the replica, let it lag, then resync the primary
	// from it and promote it again, numberd's connections never moving: the
	// primary keeps its run id and holds older data (its replication id changes).
	redisRollback kind = "redis-rollback"
	// redisRestore: DUMP the keys of a pool (or all), RESTORE them after the
	// hold into the live server (finding 2).
	redisRestore kind = "redis-dump-restore"
	// redisDel: DEL one key of a pool: meta, seg or an idempotency record
	// (findings 4 and 5).
	redisDel kind = "redis-del"
	// redisEvict: maxmemory with allkeys-random and filler keys, lifted after
	// the hold.
	redisEvict kind = "redis-evict"
	// redisPause: SIGSTOP the primary past the request timeout (finding 3).
	redisPause     kind = "redis-pause"
	mysqlCut       kind = "mysql-cut"       // toxiproxy closes MySQL's connections and refuses new ones
	mysqlBlackhole kind = "mysql-blackhole" // toxiproxy swallows everything, connections stay open
)

var (
	nodeKinds  = []kind{nodeKill, nodePause}
	storeKinds = []kind{redisFlushAll, redisRestart, redisFailover, redisRollback, redisRestore, redisDel, redisEvict, redisPause, mysqlCut, mysqlBlackhole}
)

// fault is one fault of the schedule: what the plan says, and what happened.
type fault struct {
	Seq  int           `json:"seq"`
	Lane string        `json:"lane"`
	Kind kind          `json:"kind"`
	At   time.Duration `json:"at"` // planned start, from the start of the run
	// Lag is how long a failover's replica lags before it takes over.
	Lag  time.Duration `json:"lag,omitempty"`
	Hold time.Duration `json:"hold,omitempty"` // how long the fault lasts
	Node int           `json:"node,omitempty"` // node faults: index of the node
	Pool string        `json:"pool,omitempty"` // "" for every pool
	Key  string        `json:"key,omitempty"`  // redis-del: meta, seg or idem

	Started time.Time `json:"started"`
	Healed  time.Time `json:"healed"`
	// Skipped: the run's time was up before the lane reached it.
	Skipped bool     `json:"skipped,omitempty"`
	Notes   []string `json:"notes,omitempty"`
	// Errs are steps that failed: the fault was not what the plan says.
	Errs []string `json:"errs,omitempty"`
}

func (f *fault) note(format string, args ...any) {
	f.Notes = append(f.Notes, fmt.Sprintf(format, args...))
}

func (f *fault) check(step string, err error) bool {
	if err != nil {
		f.Errs = append(f.Errs, step+": "+firstLine(err.Error()))
	}
	return err == nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// describe is the fault's plan in words.
func (f *fault) describe(nodes []*harness.Node) string {
	var b strings.Builder
	b.WriteString(string(f.Kind))
	switch f.Lane {
	case "node":
		fmt.Fprintf(&b, " %s", nodes[f.Node].Name())
	}
	if f.Kind == redisDel || f.Kind == redisRestore {
		pool := f.Pool
		if pool == "" {
			pool = "every pool"
		}
		fmt.Fprintf(&b, " %s", pool)
	}
	if f.Key != "" {
		fmt.Fprintf(&b, " %s", f.Key)
	}
	if f.Lag > 0 {
		fmt.Fprintf(&b, " lag %v", f.Lag)
	}
	if f.Hold > 0 {
		fmt.Fprintf(&b, " hold %v", f.Hold)
	}
	return b.String()
}

// plan draws the schedule of a run from seed: two lanes that run at once, the
// nodes' and the stores', each a sequence of faults with quiet spells between.
// Each lane deals its kinds like cards, every kind once before any again, so that
// even a short run sees every kind. Every fault ends within duration.
func plan(seed uint64, duration time.Duration, nodes int) []*fault {
	rng := rand.New(rand.NewPCG(seed, 1))
	between := func(lo, hi time.Duration) time.Duration {
		return (lo + time.Duration(rng.Int64N(int64(hi-lo)))).Round(10 * time.Millisecond)
	}
	var out []*fault
	lane := func(name string, kinds []kind, warmup time.Duration, quiet [2]time.Duration, draw func(*fault)) {
		var deck []kind
		at := warmup
		for {
			if len(deck) == 0 {
				deck = append(deck, kinds...)
				rng.Shuffle(len(deck), func(i, j int) { deck[i], deck[j] = deck[j], deck[i] })
			}
			f := &fault{Lane: name, Kind: deck[0], At: at}
			deck = deck[1:]
			draw(f)
			end := at + f.Lag + f.Hold
			if end > duration-time.Second {
				return
			}
			out = append(out, f)
			at = end + between(quiet[0], quiet[1])
		}
	}
	lane("node", nodeKinds, 3*time.Second, [2]time.Duration{time.Second, 4 * time.Second}, func(f *fault) {
		f.Node = rng.IntN(nodes)
		switch f.Kind {
		case nodeKill:
			f.Hold = between(300*time.Millisecond, 2*time.Second)
		case nodePause:
			// Some pauses outlast clientTimeout: their calls break off.
			f.Hold = between(300*time.Millisecond, clientTimeout+1500*time.Millisecond)
		}
	})
	lane("store", storeKinds, 2*time.Second, [2]time.Duration{500 * time.Millisecond, 2500 * time.Millisecond}, func(f *fault) {
		switch f.Kind {
		case redisRestart:
			f.Hold = between(200*time.Millisecond, 1500*time.Millisecond)
		case redisFailover:
			f.Lag, f.Hold = between(500*time.Millisecond, 2*time.Second), between(time.Second, 3*time.Second)
		case redisRollback:
			f.Lag = between(500*time.Millisecond, 2500*time.Millisecond)
		case redisRestore:
			f.Hold = between(500*time.Millisecond, 3*time.Second)
			if rng.IntN(2) == 0 {
				f.Pool = testPools[rng.IntN(len(testPools))].name
			}
		case redisDel:
			f.Pool = testPools[rng.IntN(len(testPools))].name
			f.Key = []string{"meta", "seg", "seg", "idem"}[rng.IntN(4)]
		case redisEvict:
			f.Hold = between(500*time.Millisecond, 2500*time.Millisecond)
		case redisPause:
			// Past the request timeout, so the calls queued in Redis outlive
			// their requests.
			f.Hold = between(requestTimeout+200*time.Millisecond, 3*requestTimeout+500*time.Millisecond)
		case mysqlCut, mysqlBlackhole:
			f.Hold = between(500*time.Millisecond, 3500*time.Millisecond)
		}
	})
	// Number the faults in the order they are planned to start.
	sortFaults(out)
	for i, f := range out {
		f.Seq = i + 1
	}
	return out
}

func sortFaults(fs []*fault) {
	for i := 1; i < len(fs); i++ {
		for j := i; j > 0 && fs[j].At < fs[j-1].At; j-- {
			fs[j], fs[j-1] = fs[j-1], fs[j]
		}
	}
}

// nemesis runs a schedule against a system.
type nemesis struct {
	sys      *system
	start    time.Time
	duration time.Duration
	seed     uint64
}

// run runs the lanes of faults at once, each in its own goroutine, and returns
// when both are done. A lane that falls behind its plan (a node slow to restart)
// runs its faults late, and skips those it reaches after the run's time.
func (n *nemesis) run(faults []*fault) {
	lanes := map[string][]*fault{}
	for _, f := range faults {
		lanes[f.Lane] = append(lanes[f.Lane], f)
	}
	var wg sync.WaitGroup
	for i, name := range []string{"node", "store"} {
		wg.Add(1)
		rng := rand.New(rand.NewPCG(n.seed, uint64(10+i)))
		go func() {
			defer wg.Done()
			for _, f := range lanes[name] {
				time.Sleep(time.Until(n.start.Add(f.At)))
				if time.Since(n.start) > n.duration {
					f.Skipped = true
					continue
				}
				f.Started = time.Now()
				n.apply(f, rng)
				f.Healed = time.Now()
			}
		}()
	}
	wg.Wait()
}

// apply injects f, holds it, and heals it. A step that fails is recorded and the
// rest of the fault is healed as far as it can be.
func (n *nemesis) apply(f *fault, rng *rand.Rand) {
	s := n.sys
	r := s.redis
	switch f.Kind {
	case nodeKill:
		node := s.nodes[f.Node]
		if f.check("kill -9", try(node.Kill9)) {
			time.Sleep(f.Hold)
		}
		n.restartNode(f, node)
	case nodePause:
		node := s.nodes[f.Node]
		if f.check("SIGSTOP", try(node.Pause)) {
			time.Sleep(f.Hold)
			f.check("SIGCONT", try(node.Resume))
		}
	case redisFlushAll:
		f.check("FLUSHALL", r.flushAll())
	case redisRestart:
		r.kill()
		time.Sleep(f.Hold)
		n.retry(f, "starting Redis", r.start)
	case redisPause:
		if f.check("SIGSTOP Redis", r.pause()) {
			time.Sleep(f.Hold)
		}
		f.check("SIGCONT Redis", r.resume())
	case redisFailover:
		if !f.check("detaching the replica", r.detachReplica()) {
			f.check("reattaching the replica", r.reattachReplica())
			break
		}
		time.Sleep(f.Lag)
		if f.check("pointing numberd at the replica", r.switchToReplica()) {
			time.Sleep(f.Hold)
		}
		f.check("failing back", r.switchBack())
	case redisRollback:
		if f.check("detaching the replica", r.detachReplica()) {
			time.Sleep(f.Lag)
			f.check("resyncing the primary from the lagging replica", r.resyncPrimaryFromReplica())
		}
		f.check("reattaching the replica", r.reattachReplica())
	case redisRestore:
		keys, err := r.dump(f.Pool)
		if !f.check("DUMP", err) {
			break
		}
		f.note("dumped %d keys", len(keys))
		time.Sleep(f.Hold)
		f.check("RESTORE", r.restore(keys))
	case redisDel:
		key, err := r.del(f.Pool, f.Key, rng)
		f.check("DEL", err)
		f.note("deleted %s", key)
	case redisEvict:
		evicted, gone, err := r.evict()
		if f.check("evicting", err) {
			f.note("evicted %d keys; gone: %v", evicted, gone)
			time.Sleep(f.Hold)
		}
		f.check("lifting maxmemory", r.unevict())
	case mysqlCut:
		s.mysqlProxy.Cut()
		time.Sleep(f.Hold)
		f.check("restoring the MySQL proxy", try(s.mysqlProxy.Restore))
	case mysqlBlackhole:
		if f.check("blackholing MySQL", try(s.mysqlProxy.Blackhole)) {
			time.Sleep(f.Hold)
			f.check("ending the blackhole", try(s.mysqlProxy.Unblackhole))
		}
	}
}

// restartTimeout bounds how long a killed node is restarted for.
const restartTimeout = 2 * time.Minute

// restartNode starts a killed node again, retrying as a supervisor would: a node
// does not start while the store it needs at start is cut.
func (n *nemesis) restartNode(f *fault, node *harness.Node) {
	n.retry(f, "restarting "+node.Name(), func() error {
		if node.Running() {
			return nil
		}
		return try(node.Restart)
	})
}

// retry calls do until it succeeds, for restartTimeout at most, noting failures.
func (n *nemesis) retry(f *fault, what string, do func() error) {
	deadline := time.Now().Add(restartTimeout)
	for attempt := 1; ; attempt++ {
		err := do()
		if err == nil {
			if attempt > 1 {
				f.note("%s succeeded at attempt %d", what, attempt)
			}
			return
		}
		if time.Now().After(deadline) {
			f.check(what, fmt.Errorf("still failing after %v: %w", restartTimeout, err))
			return
		}
		f.note("%s failed (attempt %d, retrying): %s", what, attempt, firstLine(err.Error()))
		time.Sleep(500 * time.Millisecond)
	}
}

// healAll undoes whatever fault a failed step left in place: every node runs and
// is not paused, Redis runs, unpaused, without a memory limit, with numberd on the
// primary, and MySQL is reachable. The lanes heal each fault they inject; this is
// the safety net.
func (n *nemesis) healAll() []string {
	s := n.sys
	f := &fault{Kind: "heal-all"}
	for _, node := range s.nodes {
		if node.Paused() {
			f.check("SIGCONT "+node.Name(), try(node.Resume))
		}
		if !node.Running() {
			n.restartNode(f, node)
		}
	}
	f.check("SIGCONT Redis", s.redis.resume())
	if err := s.redis.ping(); err != nil {
		f.note("Redis primary does not answer (%v): starting it", err)
		s.redis.kill()
		n.retry(f, "starting Redis", s.redis.start)
	}
	f.check("lifting maxmemory", s.redis.unevict())
	if s.redis.proxy.Upstream() != s.redis.primary.Addr() {
		f.check("pointing numberd at the primary", try(func() { s.redis.proxy.Retarget(s.redis.primary.Addr()) }))
	}
	if !s.redis.replicaFollows() {
		f.check("reattaching the replica", s.redis.reattachReplica())
	}
	f.check("restoring the MySQL proxy", try(s.mysqlProxy.Restore))
	// Unblackhole fails when there is no blackhole: nothing to heal then.
	_ = try(s.mysqlProxy.Unblackhole)
	return f.Errs
}
