package alloc_test

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/numberd/numberd/scripts/lua"
	testharness "github.com/numberd/numberd/test/harness"
)

// TestAllocateScriptBatches runs allocate.lua on a state written by hand: batches
// the fast path answers (no keys, within the first segment's lease) and the ones
// it must not (a lease too short, a second segment, keys, replays, conflicts).
func TestAllocateScriptBatches(t *testing.T) {
	srv := testharness.StartRedis(t, "redis")
	rdb := srv.Client()
	ctx := context.Background()
	info, err := srv.Info(ctx, "server")
	if err != nil {
		t.Fatal(err)
	}
	script := redis.NewScript(lua.Allocate)
	const meta, seg = "numberd:{p}:meta", "numberd:{p}:seg"
	// reset writes segment 1 (size1 numbers, lease1 reserved) and segment 2 (ten
	// numbers, all reserved), nothing used.
	reset := func(size1, lease1 int) {
		t.Helper()
		if err := rdb.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		rdb.HSet(ctx, meta, "run", info["run_id"], "gen", 1, "queue", "1,2")
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
