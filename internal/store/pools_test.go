package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/store"
)

func TestPools(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		if _, _, err := s.PutPool(ctx, "p", numberd.PoolUpdate{}); !errors.Is(err, numberd.ErrInvalid) {
			t.Fatalf("create without digits: err = %v, want ErrInvalid", err)
		}
		p, created, err := s.PutPool(ctx, "p", numberd.PoolUpdate{Digits: ptr(20), Upstream: ptr("leqi")})
		if err != nil || !created {
			t.Fatalf("create: created %v, %v", created, err)
		}
		if p.Digits != 20 || p.RefillThreshold != numberd.DefaultRefillThreshold || p.Upstream != "leqi" || p.RefillQuantity != 0 {
			t.Errorf("created pool = %+v", p)
		}
		p, created, err = s.PutPool(ctx, "p", numberd.PoolUpdate{RefillThreshold: ptr(int64(7)), RefillQuantity: ptr(int64(500))})
		if err != nil || created {
			t.Fatalf("update: created %v, %v", created, err)
		}
		if p.Digits != 20 || p.RefillThreshold != 7 || p.Upstream != "leqi" || p.RefillQuantity != 500 {
			t.Errorf("updated pool = %+v", p)
		}
		if _, _, err := s.PutPool(ctx, "p", numberd.PoolUpdate{Digits: ptr(12)}); !errors.Is(err, numberd.ErrInvalid) {
			t.Errorf("changing digits: err = %v, want ErrInvalid", err)
		}
		if _, _, err := s.PutPool(ctx, "p", numberd.PoolUpdate{Digits: ptr(20), Upstream: ptr("")}); err != nil {
			t.Errorf("same digits again: %v", err)
		}
		got, err := s.Pool(ctx, "p")
		if err != nil {
			t.Fatal(err)
		}
		if got.Upstream != "" || got.RefillThreshold != 7 || got.Digits != 20 {
			t.Errorf("Pool = %+v", got)
		}
		if _, err := s.Pool(ctx, "nope"); !errors.Is(err, numberd.ErrPoolNotFound) {
			t.Errorf("Pool(nope) err = %v, want ErrPoolNotFound", err)
		}
		mustPool(t, s, "a", 4)
		pools, err := s.Pools(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(pools) != 2 || pools[0].ID != "a" || pools[1].ID != "p" {
			t.Errorf("Pools = %+v, want a, p", pools)
		}
	})
}
