package distributed_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/numberd/numberd/scripts/lua"
	testharness "github.com/numberd/numberd/test/harness"
)

// The keys of pool p's state that the scripts run on.
const meta, seg = "numberd:{p}:meta", "numberd:{p}:seg"

// scriptRedis starts a throwaway Redis for running the scripts on hand-written
// states, and returns a client and the stamp (run id and replication id) that
// states are stamped with, as HSET arguments.
func scriptRedis(t *testing.T) (*redis.Client, []any) {
	t.Helper()
	srv := testharness.StartRedis(t, "redis")
	info, err := srv.Info(context.Background(), "server")
	if err != nil {
		t.Fatal(err)
	}
	repl, err := srv.Info(context.Background(), "replication")
	if err != nil {
		t.Fatal(err)
	}
	return srv.Client(), []any{"run", info["run_id"], "repl", repl["master_replid"]}
}

// writeState empties rdb and writes pool p's state: metaFields and segFields,
// as HSET arguments.
func writeState(t *testing.T, rdb *redis.Client, metaFields []any, segFields ...any) {
	t.Helper()
	ctx := context.Background()
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, meta, metaFields...).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, seg, segFields...).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestAllocateScriptBatches runs allocate.lua on a state written by hand: batches
// the fast path answers (no keys, within the first segment's lease) and the ones
// it must not (a lease too short, a second segment, keys, replays, conflicts).
func TestAllocateScriptBatches(t *testing.T) {
	rdb, stamp := scriptRedis(t)
	ctx := context.Background()
	script := redis.NewScript(lua.Allocate)
	// reset writes segment 1 (size1 numbers, lease1 reserved) and segment 2 (ten
	// numbers, all reserved), nothing used.
	reset := func(size1, lease1 int) {
		t.Helper()
		if err := rdb.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		rdb.HSet(ctx, meta, append(stamp, "gen", 1, "queue", "1,2")...)
		rdb.HSet(ctx, seg, "1:size", size1, "1:used", 0, "1:lease", lease1, "1:exp", 0,
			"2:size", 10, "2:used", 0, "2:lease", 10, "2:exp", 0)
	}
	calls := 0
	allocate := func(args []any, idemKeys ...string) []string {
		t.Helper()
		calls++
		keys := append([]string{meta, seg}, idemKeys...)
		// No floors read yet, and no age limit: this test is not about them.
		all := append(append([]any{strings.Repeat("x", calls), 86400, 0, 0}, args[:4]...), 0, 0)
		reply, err := script.Run(ctx, rdb, keys, append(all, args[4:]...)...).Text()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Fields(reply)
	}
	check := func(name string, got []string, letters, runs string, extra ...string) {
		t.Helper()
		want := append([]string{letters, runs}, extra...)
		if len(got) < 8 || got[0] != "OK" || strings.Join(got[6:], " ") != strings.Join(want, " ") {
			t.Errorf("%s: answer %q, want letters, runs and the rest %q", name, got, want)
		}
	}

	reset(100, 100)
	check("plain, within the lease", allocate([]any{3, 6, "1,2,3", "-"}), "AAA", "1:0-5")
	check("next batch goes on", allocate([]any{1, 1, "1", "-"}), "A", "1:6-6")

	reset(100, 4)
	check("lease too short for the third", allocate([]any{3, 6, "1,2,3", "-"}), "AAL", "1:0-2")
	check("lease too short, a smaller one still fits", allocate([]any{2, 3, "2,1", "-"}), "LA", "1:3-3")

	reset(5, 5)
	check("across two segments", allocate([]any{2, 7, "4,3", "-"}), "AA", "1:0-4,2:0-1")
	check("more than is left", allocate([]any{2, 10, "9,1", "-"}), "XA", "2:2-2")

	reset(100, 100)
	k1, k2 := "numberd:{p}:idem:s:k1", "numberd:{p}:idem:s:k2"
	check("keyed and plain in one batch", allocate([]any{3, 4, "1,2,1", "0,1,0", "count=2"}, k1), "AAA", "1:0-3")
	check("replayed, conflicting and new keys", allocate([]any{3, 7, "2,3,5", "1,0,2", "count=2", "count=5"}, k1, k2),
		"RAA", "1:4-11", "R:1:1-2", "U:1:12", "U:2:0")
	check("a key reused for another count", allocate([]any{1, 4, "4", "1", "count=4"}, k1), "C", "-")
	used, err := rdb.HGet(ctx, seg, "1:used").Int()
	if err != nil || used != 12 {
		t.Errorf("segment 1 used = %d, %v; want 12", used, err)
	}
}

// TestRetireScriptKeepsASegmentOut runs retire.lua, add.lua and lease.lua on a
// state written by hand: a segment retired before this state had it is never
// added afterwards, and a lease raise that meets a segment retired since the
// caller looked raises the others and leaves that one as it was.
func TestRetireScriptKeepsASegmentOut(t *testing.T) {
	rdb, stamp := scriptRedis(t)
	ctx := context.Background()
	keys := []string{meta, seg}
	rdb.HSet(ctx, meta, append(stamp, "gen", 7, "queue", "1,2")...)
	rdb.HSet(ctx, seg, "1:size", 100, "1:used", 10, "1:lease", 20, "1:exp", 0,
		"2:size", 100, "2:used", 0, "2:lease", 0, "2:exp", 0)
	run := func(script string, args ...any) string {
		t.Helper()
		reply, err := redis.NewScript(script).Run(ctx, rdb, keys, args...).Text()
		if err != nil {
			t.Fatal(err)
		}
		return reply
	}

	if got := run(lua.Retire, 3, "retired"); got != "ABSENT 7" {
		t.Errorf("retire of a segment the state lacks = %q, want ABSENT 7", got)
	}
	if got := run(lua.Add, 7, 1, 3, 100, 0, 0); got != "OK 0" {
		t.Errorf("add after the retire = %q, want OK 0", got)
	}
	if q, _ := rdb.HGet(ctx, meta, "queue").Result(); q != "1,2" {
		t.Errorf("queue after the add = %q, want 1,2", q)
	}

	if got := run(lua.Retire, 1, "retired"); got != "OK 10 7" {
		t.Errorf("retire of segment 1 = %q, want OK 10 7", got)
	}
	if got := run(lua.Retire, 1, "retired"); got != "OK 10 7" {
		t.Errorf("retire again = %q, want OK 10 7", got)
	}
	if got := run(lua.Lease, 7, 2, 1, 20, 60, 2, 0, 40); got != "OK" {
		t.Errorf("lease raise over a retired segment = %q, want OK", got)
	}
	leases, _ := rdb.HMGet(ctx, seg, "1:lease", "2:lease").Result()
	if leases[0] != "20" || leases[1] != "40" {
		t.Errorf("leases after the raise = %v, want 20 (retired) and 40", leases)
	}
	if got := run(lua.Lease, 7, 1, 2, 0, 50); got != "MISMATCH" {
		t.Errorf("lease raise from a stale lease = %q, want MISMATCH", got)
	}
	if got := run(lua.Lease, 6, 1, 2, 40, 50); got != "MISMATCH" {
		t.Errorf("lease raise under another generation = %q, want MISMATCH", got)
	}
}

// TestAllocateScriptRefusesUnusableStates: allocate.lua hands out nothing from a
// state it cannot trust, and says why: missing, stamped under another replication
// history, of a superseded generation, older than a version the caller saw, or
// partly gone; and a call given up by resolve.lua never runs.
func TestAllocateScriptRefusesUnusableStates(t *testing.T) {
	rdb, stamp := scriptRedis(t)
	ctx := context.Background()
	script := redis.NewScript(lua.Allocate)
	reset := func() {
		writeState(t, rdb, append(stamp, "gen", 3, "ver", 5, "queue", "1"),
			"ver", 5, "1:size", 100, "1:used", 10, "1:lease", 100, "1:exp", 0)
	}
	allocate := func(memo string, gen, ver int) string {
		t.Helper()
		reply, err := script.Run(ctx, rdb, []string{meta, seg}, memo, 86400, gen, ver, 1, 1, "1", "-", 0, 0).Text()
		if err != nil {
			t.Fatal(err)
		}
		return reply
	}
	used := func() string { return rdb.HGet(ctx, seg, "1:used").Val() }

	reset()
	if got := allocate("a", 3, 5); !strings.HasPrefix(got, "OK 3 6 ") {
		t.Fatalf("allocate on a good state = %q, want OK at generation 3, version 6", got)
	}
	for _, tc := range []struct {
		name    string
		damage  func()
		gen     int
		ver     int
		wantWhy string
	}{
		{"missing", func() { rdb.Del(ctx, meta, seg) }, 3, 5, "RESEED lost -"},
		{"another replication history", func() { rdb.HSet(ctx, meta, "repl", strings.Repeat("0", 40)) }, 3, 5, "RESEED foreign 3"},
		{"superseded generation", func() {}, 4, 0, "RESEED superseded 3"},
		{"older than seen", func() {}, 3, 6, "RESEED behind 3"},
		{"seg key gone", func() { rdb.Del(ctx, seg) }, 3, 5, "RESEED partial 3"},
		{"a field gone", func() { rdb.HDel(ctx, seg, "1:lease") }, 3, 5, "RESEED partial 3"},
		{"seg of another moment", func() { rdb.HSet(ctx, seg, "ver", 4) }, 3, 5, "RESEED partial 3"},
	} {
		reset()
		tc.damage()
		if got := allocate(tc.name, tc.gen, tc.ver); got != tc.wantWhy {
			t.Errorf("%s: allocate = %q, want %q", tc.name, got, tc.wantWhy)
		}
		if u := used(); u != "10" && u != "" {
			t.Errorf("%s: used = %s after the refusal, want 10", tc.name, u)
		}
	}

	reset()
	resolve := redis.NewScript(lua.Resolve)
	if got := resolve.Run(ctx, rdb, []string{seg}, "late", "read").Val(); got != "VOID" {
		t.Errorf("resolve of a call that never ran = %v, want VOID", got)
	}
	if got := allocate("late", 3, 5); got != "VOID" {
		t.Errorf("the given-up call arriving late = %q, want VOID", got)
	}
	if u := used(); u != "10" {
		t.Errorf("used = %s after the late call, want 10", u)
	}
	done := allocate("ran", 3, 5)
	if got := resolve.Run(ctx, rdb, []string{seg}, "ran", "read").Val(); got != done {
		t.Errorf("resolve of a call that ran = %v, want its answer %q", got, done)
	}
	if got := resolve.Run(ctx, rdb, []string{seg}, "ran", "close").Val(); got != "VOID" {
		t.Errorf("closing the memo of a settled call = %v, want VOID", got)
	}
	if got := allocate("ran", 3, 5); got != "VOID" {
		t.Errorf("a settled call arriving again = %q, want VOID", got)
	}
	if u := used(); u != "11" {
		t.Errorf("used = %s after the settled call came again, want 11", u)
	}
}

// TestSeedScriptReportsTheReplacedState runs seed.lua over states written by
// hand: it reports how far a usable state went, and nothing of a state that is
// missing, foreign or partial, whose cursors tell nothing.
func TestSeedScriptReportsTheReplacedState(t *testing.T) {
	rdb, stamp := scriptRedis(t)
	ctx := context.Background()
	script := redis.NewScript(lua.Seed)
	// Segment 1 used up and out of the queue, segment 2 in use.
	state := []any{"ver", 5, "1:size", 10, "1:used", 10, "1:lease", 10, "1:exp", 0, "2:size", 100, "2:used", 42, "2:lease", 60, "2:exp", 0}
	seed := func() string {
		t.Helper()
		reply, err := script.Run(ctx, rdb, []string{meta, seg}, 4, 1, 2, 100, 61, 0).Text()
		if err != nil {
			t.Fatal(err)
		}
		_, old, _ := strings.Cut(reply, " ")
		return old
	}
	for _, tc := range []struct {
		name   string
		damage func()
		want   string
	}{
		{"usable", func() {}, "3 5 1:10 2:42"},
		{"missing", func() { rdb.Del(ctx, meta, seg) }, "-"},
		{"another replication history", func() { rdb.HSet(ctx, meta, "repl", strings.Repeat("0", 40)) }, "-"},
		{"a field gone", func() { rdb.HDel(ctx, seg, "2:lease") }, "-"},
		{"seg of another moment", func() { rdb.HSet(ctx, seg, "ver", 4) }, "-"},
	} {
		writeState(t, rdb, append(stamp, "gen", 3, "ver", 5, "queue", "2"), state...)
		tc.damage()
		if got := seed(); got != tc.want {
			t.Errorf("%s: seed reports %q, want %q", tc.name, got, tc.want)
		}
		if used, lease := rdb.HGet(ctx, seg, "2:used").Val(), rdb.HGet(ctx, seg, "2:lease").Val(); used != "61" || lease != "61" {
			t.Errorf("%s: after the seed used %s, lease %s; want 61 and 61", tc.name, used, lease)
		}
	}
}

// TestAllocateScriptRefusesStaleFloorsAndOldKeyRecords: allocate.lua hands out
// nothing to a caller whose floors are older, by Redis's clock, than the age it
// allows (a node paused, or cut off from the store, across a restore of the
// keys), and ignores a key's record written under an older generation, whose
// numbers may have gone to no one before a reseed.
func TestAllocateScriptRefusesStaleFloorsAndOldKeyRecords(t *testing.T) {
	rdb, stamp := scriptRedis(t)
	ctx := context.Background()
	script := redis.NewScript(lua.Allocate)
	writeState(t, rdb, append(stamp, "gen", 3, "ver", 5, "queue", "1"),
		"ver", 5, "1:size", 100, "1:used", 10, "1:lease", 100, "1:exp", 0)
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	idem := "numberd:{p}:idem:s:k"
	allocate := func(memo string, floorsAt time.Time, keyed bool) string {
		t.Helper()
		keys := []string{meta, seg}
		args := []any{memo, 86400, 3, 5, 1, 1, "1", "-", floorsAt.UnixMilli(), 3000}
		if keyed {
			args[7] = "1"
			keys, args = append(keys, idem), append(args, "count=1")
		}
		reply, err := script.Run(ctx, rdb, keys, args...).Text()
		if err != nil {
			t.Fatal(err)
		}
		return reply
	}
	if got := allocate("stale", now.Add(-4*time.Second), false); got != "STALE" {
		t.Errorf("floors 4 s old, 3 s allowed: %q, want STALE", got)
	}
	if used := rdb.HGet(ctx, seg, "1:used").Val(); used != "10" {
		t.Errorf("used = %s after a STALE answer, want 10: nothing handed out", used)
	}
	if got := allocate("fresh", now, false); !strings.HasPrefix(got, "OK 3 ") || !strings.Contains(got, " A 1:10-10") {
		t.Errorf("fresh floors: %q, want 1:10-10 handed out", got)
	}
	rdb.Set(ctx, idem, "2|count=1|1:3-3", 0)
	if got := allocate("old-record", now, true); !strings.Contains(got, " A 1:11-11") {
		t.Errorf("key with a record of generation 2 in a state of 3: %q, want new numbers", got)
	}
	got := allocate("replay", now, true)
	if !strings.Contains(got, " R - R:1:11-11 U:1:12") {
		t.Errorf("key with a record of this generation: %q, want its replay and the state's used count", got)
	}
}
