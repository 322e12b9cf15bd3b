package alloc_test

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/numberd/numberd/scripts/lua"
	testharness "github.com/numberd/numberd/test/harness"
)

// The keys of pool p's state that the scripts run on.
const meta, seg = "numberd:{p}:meta", "numberd:{p}:seg"

// scriptRedis starts a throwaway Redis for running the scripts on hand-written
// states, and returns a client and the server's run id that states are stamped with.
func scriptRedis(t *testing.T) (*redis.Client, string) {
	t.Helper()
	srv := testharness.StartRedis(t, "redis")
	info, err := srv.Info(context.Background(), "server")
	if err != nil {
		t.Fatal(err)
	}
	return srv.Client(), info["run_id"]
}

// TestAllocateScriptBatches runs allocate.lua on a state written by hand: batches
// the fast path answers (no keys, within the first segment's lease) and the ones
// it must not (a lease too short, a second segment, keys, replays, conflicts).
func TestAllocateScriptBatches(t *testing.T) {
	rdb, runID := scriptRedis(t)
	ctx := context.Background()
	script := redis.NewScript(lua.Allocate)
	// reset writes segment 1 (size1 numbers, lease1 reserved) and segment 2 (ten
	// numbers, all reserved), nothing used.
	reset := func(size1, lease1 int) {
		t.Helper()
		if err := rdb.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		rdb.HSet(ctx, meta, "run", runID, "gen", 1, "queue", "1,2")
		rdb.HSet(ctx, seg, "1:size", size1, "1:used", 0, "1:lease", lease1, "1:exp", 0,
			"2:size", 10, "2:used", 0, "2:lease", 10, "2:exp", 0)
	}
	calls := 0
	allocate := func(args []any, idemKeys ...string) []string {
		t.Helper()
		calls++
		keys := append([]string{meta, seg, "numberd:{p}:memo:" + strings.Repeat("x", calls)}, idemKeys...)
		reply, err := script.Run(ctx, rdb, keys, append([]any{60, 86400, 0}, args...)...).Text()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Fields(reply)
	}
	check := func(name string, got []string, letters, runs string, extra ...string) {
		t.Helper()
		want := append([]string{letters, runs}, extra...)
		if len(got) < 7 || got[0] != "OK" || strings.Join(got[5:], " ") != strings.Join(want, " ") {
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
		"RAA", "1:4-11", "R:1:1-2")
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
	rdb, runID := scriptRedis(t)
	ctx := context.Background()
	keys := []string{meta, seg}
	rdb.HSet(ctx, meta, "run", runID, "gen", 7, "queue", "1,2")
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
