package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/numberd/numberd/internal/store"
)

func TestIdempotencyRecords(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
		s.Now = func() time.Time { return now }
		rec := store.IdempotencyRecord{Pool: "p", Scope: "tok", Key: "k1", Fingerprint: "count=2", Answer: "a-b", CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
		must(t, s.Records().Put(ctx, rec))
		if err := s.Records().Put(ctx, rec); !errors.Is(err, store.ErrDuplicate) {
			t.Fatalf("second put: err = %v, want ErrDuplicate", err)
		}
		got, ok, err := s.Records().Get(ctx, "p", "tok", "k1")
		if err != nil || !ok || got.Answer != "a-b" || got.Fingerprint != "count=2" || !got.ExpiresAt.Equal(rec.ExpiresAt) {
			t.Fatalf("Get = %+v %v %v", got, ok, err)
		}
		for _, other := range [][3]string{{"q", "tok", "k1"}, {"p", "tok2", "k1"}, {"p", "tok", "k2"}} {
			if _, ok, err := s.Records().Get(ctx, other[0], other[1], other[2]); ok || err != nil {
				t.Errorf("Get%v = found %v, %v; keys are scoped to pool and caller", other, ok, err)
			}
		}
		now = now.Add(25 * time.Hour)
		if _, ok, _ := s.Records().Get(ctx, "p", "tok", "k1"); ok {
			t.Error("an expired record is still answered")
		}
		rec.Answer, rec.ExpiresAt = "c-d", now.Add(24*time.Hour)
		if err := s.Records().Put(ctx, rec); err != nil {
			t.Fatalf("put over an expired record: %v", err)
		}
		old := store.IdempotencyRecord{Pool: "p", Scope: "tok", Key: "old", Fingerprint: "count=1", Answer: "x", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		must(t, s.Records().Put(ctx, old))
		now = now.Add(2 * time.Hour)
		n, err := s.Records().Purge(ctx)
		if err != nil || n != 1 {
			t.Errorf("Purge = %d, %v; want 1", n, err)
		}
		if got, ok, _ := s.Records().Get(ctx, "p", "tok", "k1"); !ok || got.Answer != "c-d" {
			t.Errorf("live record after purge = %+v %v", got, ok)
		}
	})
}

// TestKeepIdempotenciesKeepsTheFirst: a batch of records stores those whose key
// is free and answers, for each, what its key holds.
func TestKeepIdempotenciesKeepsTheFirst(t *testing.T) {
	forEachPool(t, 4, func(ctx context.Context, t *testing.T, s *store.Store) {
		now := time.Now()
		rec := func(key, answer string) store.IdempotencyRecord {
			return store.IdempotencyRecord{Pool: "p", Scope: "s", Key: key, Fingerprint: "count=1", Answer: answer, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		}
		if _, err := s.Records().Keep(ctx, []store.IdempotencyRecord{rec("a", "first")}); err != nil {
			t.Fatal(err)
		}
		expired := rec("c", "old")
		expired.ExpiresAt = now.Add(-time.Second)
		must(t, s.Records().Put(ctx, expired))
		held, err := s.Records().Keep(ctx, []store.IdempotencyRecord{rec("a", "second"), rec("b", "new"), rec("c", "fresh")})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, h := range held {
			got = append(got, h.Key+"="+h.Answer)
		}
		if want := []string{"a=first", "b=new", "c=fresh"}; !slices.Equal(got, want) {
			t.Errorf("held = %q, want %q", got, want)
		}
	})
}

// TestKeepIdempotenciesAbandoned: an abandoned record (empty answer) is kept
// only where the key has no record; a replayed record does not take its place,
// a fresh one does.
func TestKeepIdempotenciesAbandoned(t *testing.T) {
	forEachPool(t, 4, func(ctx context.Context, t *testing.T, s *store.Store) {
		now := time.Now()
		rec := func(key, answer string, fresh bool) store.IdempotencyRecord {
			return store.IdempotencyRecord{Pool: "p", Scope: "s", Key: key, Fingerprint: "count=1", Answer: answer, CreatedAt: now, ExpiresAt: now.Add(time.Hour), Fresh: fresh}
		}
		keep := func(recs ...store.IdempotencyRecord) []string {
			t.Helper()
			held, err := s.Records().Keep(ctx, recs)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, h := range held {
				out = append(out, h.Key+"="+h.Answer)
			}
			return out
		}
		if got, want := keep(rec("answered", "one", true), rec("abandoned", "", false)), []string{"answered=one", "abandoned="}; !slices.Equal(got, want) {
			t.Errorf("first records: %q, want %q", got, want)
		}
		if got, want := keep(rec("answered", "", false)), []string{"answered=one"}; !slices.Equal(got, want) {
			t.Errorf("abandoning an answered key: %q, want %q", got, want)
		}
		if got, want := keep(rec("abandoned", "stale", false)), []string{"abandoned="}; !slices.Equal(got, want) {
			t.Errorf("a replayed answer over an abandoned record: %q, want %q", got, want)
		}
		if got, want := keep(rec("abandoned", "two", true)), []string{"abandoned=two"}; !slices.Equal(got, want) {
			t.Errorf("a fresh answer over an abandoned record: %q, want %q", got, want)
		}
		if got, want := keep(rec("abandoned", "three", true)), []string{"abandoned=two"}; !slices.Equal(got, want) {
			t.Errorf("a fresh answer over an answered key: %q, want %q", got, want)
		}
	})
}

// TestFindIdempotenciesAnswersEachKey: one lookup of several keys finds the
// unexpired records and nothing for a missing or expired key, in the keys' order.
func TestFindIdempotenciesAnswersEachKey(t *testing.T) {
	forEachPool(t, 4, func(ctx context.Context, t *testing.T, s *store.Store) {
		now := time.Now()
		rec := func(key, answer string, ttl time.Duration) store.IdempotencyRecord {
			return store.IdempotencyRecord{Pool: "p", Scope: "s", Key: key, Fingerprint: "count=1", Answer: answer, CreatedAt: now, ExpiresAt: now.Add(ttl)}
		}
		for _, r := range []store.IdempotencyRecord{rec("a", "one", time.Hour), rec("b", "two", time.Hour), rec("old", "gone", -time.Second)} {
			must(t, s.Records().Put(ctx, r))
		}
		other := rec("a", "", 0)
		other.Scope = "another caller"
		found, err := s.Records().Find(ctx, []store.IdempotencyRecord{rec("b", "", 0), rec("missing", "", 0), rec("old", "", 0), other, rec("a", "", 0)})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, f := range found {
			got = append(got, f.Key+"="+f.Answer)
		}
		if want := []string{"b=two", "=", "=", "=", "a=one"}; !slices.Equal(got, want) {
			t.Errorf("found = %q, want %q", got, want)
		}
	})
}
