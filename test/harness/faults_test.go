package harness

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestRedisFaults checks the Redis fault primitives against real servers.
func TestRedisFaults(t *testing.T) {
	ctx := context.Background()
	a := StartRedis(t, "a", "--repl-diskless-sync-delay", "0")
	b := StartReplica(t, "b", a)
	ca := a.Client()
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	get := func(r *Redis, key string) string {
		t.Helper()
		c := r.conn()
		defer c.Close()
		return c.Get(ctx, key).Val()
	}

	t.Run("dump and restore", func(t *testing.T) {
		check(ca.Set(ctx, "k:{p}:x", "1", 0).Err())
		check(ca.Set(ctx, "k:{p}:y", "1", 100*time.Second).Err())
		check(ca.Set(ctx, "other", "1", 0).Err())
		dump, err := a.DumpKeys(ctx, "k:{p}:*")
		check(err)
		if len(dump) != 2 {
			t.Fatalf("dumped %v, want the two keys of {p}", dump.Names())
		}
		for _, k := range dump {
			if strings.HasSuffix(k.Key, "y") != (k.TTL > 90*time.Second) || k.TTL > 100*time.Second {
				t.Errorf("%s dumped with TTL %v", k.Key, k.TTL)
			}
		}
		check(ca.Set(ctx, "k:{p}:x", "2", 0).Err())
		if n, err := a.DelKeys(ctx, "k:{p}:y"); err != nil || n != 1 {
			t.Fatalf("DelKeys: %d, %v", n, err)
		}
		check(a.RestoreKeys(ctx, dump))
		if x, ttl := get(a, "k:{p}:x"), ca.PTTL(ctx, "k:{p}:y").Val(); x != "1" || ttl < 90*time.Second {
			t.Errorf("after the restore x = %q, y's TTL %v; want 1 and about 100s", x, ttl)
		}
		keys, err := a.Keys(ctx, "*")
		check(err)
		if len(keys) != 3 {
			t.Errorf("Keys(*) = %v, want 3 keys", keys)
		}
	})

	t.Run("failover and back", func(t *testing.T) {
		run, _ := a.RunID(ctx)
		repl, _ := a.ReplicationID(ctx)
		check(ca.Set(ctx, "fb", "before", 0).Err())
		check(FailoverAndBack(ctx, a, b, func() error { return ca.Set(ctx, "fb", "after", 0).Err() }))
		run2, _ := a.RunID(ctx)
		repl2, _ := a.ReplicationID(ctx)
		if got := get(a, "fb"); got != "before" || run2 != run || repl2 == repl {
			t.Errorf("after failing over and back fb = %q (want before), run id %s → %s (want the same), replication id %s → %s (want another)",
				got, run, run2, repl, repl2)
		}
		if err := ca.Set(ctx, "fb", "writable", 0).Err(); err != nil {
			t.Errorf("a takes no writes after failing back: %v", err)
		}
		check(Follow(ctx, b, a))
		check(ca.Set(ctx, "fb", "again", 0).Err())
		check(AwaitSync(ctx, a, b))
		if got := get(b, "fb"); got != "again" {
			t.Errorf("b follows a again but has fb = %q", got)
		}
	})

	t.Run("pause", func(t *testing.T) {
		check(a.Pause())
		c := redis.NewClient(&redis.Options{Addr: a.Addr(), MaxRetries: -1, ReadTimeout: 300 * time.Millisecond})
		err := c.Ping(ctx).Err()
		_ = c.Close()
		if err == nil {
			t.Errorf("a paused server answered PING")
		}
		check(a.Resume())
		if err := ca.Ping(ctx).Err(); err != nil {
			t.Errorf("PING after Resume: %v", err)
		}
	})

	t.Run("eviction", func(t *testing.T) {
		c := StartRedis(t, "c")
		cc := c.Client()
		value := strings.Repeat("v", 1024)
		for i := range 2000 {
			check(cc.Set(ctx, fmt.Sprint("key", i), value, 0).Err())
		}
		used, err := c.UsedMemory(ctx)
		check(err)
		check(c.SetMaxMemory(ctx, used-1<<20, "allkeys-random"))
		check(cc.Set(ctx, "one more", value, 0).Err())
		evicted, err := c.InfoInt(ctx, "stats", "evicted_keys")
		check(err)
		if evicted == 0 {
			t.Errorf("no key evicted with maxmemory 1 MiB below the memory used (%d bytes)", used)
		}
		sets, err := c.CommandCalls(ctx, "SET")
		check(err)
		if sets != 2001 {
			t.Errorf("CommandCalls(SET) = %d, want 2001", sets)
		}
		check(c.FlushAll(ctx))
		if n := cc.DBSize(ctx).Val(); n != 0 {
			t.Errorf("%d keys after FlushAll", n)
		}
	})
}
