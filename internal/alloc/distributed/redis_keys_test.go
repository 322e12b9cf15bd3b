package distributed_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/store"
	testharness "github.com/numberd/numberd/test/harness" // harness here is embedded_test.go's type
)

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
	held, err := c.stores[0].Records().Keep(ctx, []store.IdempotencyRecord{{Pool: "p", Scope: "s", Key: "k", Fingerprint: "count=2", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}})
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
