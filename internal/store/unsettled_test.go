package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/numberd/numberd/internal/store"
)

// TestUnsettled: entries are kept once per id, listed once old enough by the
// store's clock, found by id, and forgotten.
func TestUnsettled(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		for _, u := range []store.Unsettled{{Pool: "p", ID: "a", Entry: "one"}, {Pool: "p", ID: "a", Entry: "again"}, {Pool: "q", ID: "b", Entry: "two"}} {
			must(t, s.Backlog().Put(ctx, u))
		}
		if old, err := s.Backlog().Old(ctx, time.Hour, 10); err != nil || len(old) != 0 {
			t.Fatalf("entries older than an hour: %v, %v; want none", old, err)
		}
		time.Sleep(20 * time.Millisecond)
		old, err := s.Backlog().Old(ctx, 10*time.Millisecond, 10)
		if err != nil || len(old) != 2 || old[0].Entry != "one" || old[1].Entry != "two" {
			t.Fatalf("old entries: %+v, %v; want one and two", old, err)
		}
		if has, err := s.Backlog().Has(ctx, "p", "a"); err != nil || !has {
			t.Fatalf("Has(p, a) = %v, %v; want true", has, err)
		}
		must(t, s.Backlog().Delete(ctx, "p", "a"))
		if has, err := s.Backlog().Has(ctx, "p", "a"); err != nil || has {
			t.Fatalf("Has(p, a) after its deletion = %v, %v; want false", has, err)
		}
		if has, err := s.Backlog().Has(ctx, "q", "a"); err != nil || has {
			t.Fatalf("Has(q, a), of another pool = %v, %v; want false", has, err)
		}
		if old, err := s.Backlog().Old(ctx, 0, 10); err != nil || len(old) != 1 || old[0].ID != "b" {
			t.Fatalf("after deleting a: %+v, %v; want b", old, err)
		}
	})
}
