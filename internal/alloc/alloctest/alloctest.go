// Package alloctest is the contract every allocation engine keeps, as one suite
// of tests that each engine's package runs against itself (Run), and the
// benchmark both engines are measured by (Bench). The tests speak only through
// the engine's methods, so a difference between the engines shows here.
package alloctest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/alloc"
	"github.com/numberd/numberd/internal/segment"
)

// Engine is what the contract holds an allocation engine to.
type Engine = numberd.Engine

// Opener opens an engine for one test on empty stores of its own, and returns
// with it restart, which closes the engine cleanly and opens another on the
// same stores.
type Opener func(tb testing.TB, opts alloc.Options) (eng Engine, restart func() Engine)

// Quiet discards logs, unless NUMBERD_TEST_LOG is set.
var Quiet = func() *slog.Logger {
	if os.Getenv("NUMBERD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}()

// rig is one contract test's engine and what it needs to restart it.
type rig struct {
	eng    Engine
	reopen func() Engine
}

func newRig(tb testing.TB, open Opener, opts alloc.Options) *rig {
	tb.Helper()
	opts.Logger = Quiet
	r := &rig{}
	r.eng, r.reopen = open(tb, opts)
	return r
}

func (r *rig) restart(tb testing.TB) {
	tb.Helper()
	r.eng = r.reopen()
}

func (r *rig) pool(tb testing.TB, id string, digits int) { MustPool(tb, r.eng, id, digits) }

func (r *rig) segment(tb testing.TB, pool, start, end string) numberd.SegmentStatus {
	return MustSegment(tb, r.eng, pool, start, end, time.Time{})
}

func (r *rig) segmentExpiring(tb testing.TB, pool, start, end string, expires time.Time) numberd.SegmentStatus {
	return MustSegment(tb, r.eng, pool, start, end, expires)
}

func (r *rig) take(tb testing.TB, pool string, count int) []string {
	return Take(tb, r.eng, pool, count)
}

// MustPool creates pool id with numbers of digits digits, or fails tb.
func MustPool(tb testing.TB, eng numberd.Service, id string, digits int) {
	tb.Helper()
	if _, _, err := eng.PutPool(context.Background(), id, numberd.PoolUpdate{Digits: &digits}); err != nil {
		tb.Fatal(err)
	}
}

// MustSegment loads start..end into pool, expiring at expires unless it is
// zero, or fails tb.
func MustSegment(tb testing.TB, eng numberd.Service, pool, start, end string, expires time.Time) numberd.SegmentStatus {
	tb.Helper()
	rng, err := segment.ParseRange(start, end, len(start))
	if err != nil {
		tb.Fatal(err)
	}
	s, created, err := eng.LoadSegment(context.Background(), pool, numberd.NewSegment{Range: rng, Source: numberd.SourceManual, ExpiresAt: expires})
	if err != nil || !created {
		tb.Fatalf("LoadSegment(%s..%s) = %v, %v", start, end, created, err)
	}
	return s
}

// Take allocates count numbers of pool, or fails tb.
func Take(tb testing.TB, eng numberd.Service, pool string, count int) []string {
	tb.Helper()
	a, err := eng.Allocate(context.Background(), numberd.Request{Pool: pool, Count: count})
	if err != nil {
		tb.Fatalf("Allocate(%s, %d): %v", pool, count, err)
	}
	return a.Numbers()
}

// AssertAscending fails tb unless nums ascend strictly.
func AssertAscending(tb testing.TB, nums []string) {
	tb.Helper()
	for i := 1; i < len(nums); i++ {
		if nums[i] <= nums[i-1] {
			tb.Fatalf("numbers not ascending: %s after %s", nums[i], nums[i-1])
		}
	}
}
