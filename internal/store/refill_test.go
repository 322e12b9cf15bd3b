package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/store"
)

func TestRefillLockAndFencing(t *testing.T) {
	forEachPool(t, 4, func(ctx context.Context, t *testing.T, s *store.Store) {
		f1, err := s.Refills().AcquireLock(ctx, "p", "node-a", time.Hour)
		if err != nil || f1 < 1 {
			t.Fatalf("acquire = %d, %v", f1, err)
		}
		if _, err := s.Refills().AcquireLock(ctx, "p", "node-b", time.Hour); !errors.Is(err, store.ErrHeld) {
			t.Fatalf("second holder: err = %v, want ErrHeld", err)
		}
		job, err := s.Refills().CreateJob(ctx, "p", f1, "yw-1", 100)
		if err != nil || job.State != store.JobRequesting || job.Ywlsh != "yw-1" {
			t.Fatalf("CreateJob = %+v, %v", job, err)
		}
		again, err := s.Refills().CreateJob(ctx, "p", f1, "yw-2", 100)
		if err != nil || again.ID != job.ID || again.Ywlsh != "yw-1" {
			t.Errorf("a second CreateJob = %+v, %v; want the open job resumed", again, err)
		}
		must(t, s.Refills().UpdateJob(ctx, "p", f1, job.ID, 1, "upstream: 503", store.JobRequesting))
		// The lease runs out; node-b takes over with a higher token.
		must(t, s.Refills().RenewLock(ctx, "p", "node-a", f1, -time.Second))
		f2, err := s.Refills().AcquireLock(ctx, "p", "node-b", time.Hour)
		if err != nil || f2 <= f1 {
			t.Fatalf("takeover = %d, %v; want a token above %d", f2, err, f1)
		}
		open, ok, err := s.Refills().OpenJob(ctx, "p")
		if err != nil || !ok || open.ID != job.ID || open.Attempts != 1 || open.LastError != "upstream: 503" {
			t.Fatalf("OpenJob = %+v %v %v", open, ok, err)
		}
		// node-a's late writes are refused.
		if err := s.Refills().UpdateJob(ctx, "p", f1, job.ID, 2, "late", store.JobFailed); !errors.Is(err, store.ErrFenced) {
			t.Errorf("stale UpdateJob: err = %v, want ErrFenced", err)
		}
		r := mustRange(t, "0001", "0100")
		if _, err := s.Refills().CompleteJob(ctx, "p", f1, job.ID, numberd.NewSegment{Range: r, Source: numberd.SourceUpstream, Ywlsh: "yw-1"}); !errors.Is(err, store.ErrFenced) {
			t.Errorf("stale CompleteJob: err = %v, want ErrFenced", err)
		}
		if err := s.Refills().RenewLock(ctx, "p", "node-a", f1, time.Hour); !errors.Is(err, store.ErrFenced) {
			t.Errorf("stale renewal: err = %v, want ErrFenced", err)
		}
		seg, err := s.Refills().CompleteJob(ctx, "p", f2, job.ID, numberd.NewSegment{Range: r, Source: numberd.SourceUpstream, Ywlsh: "yw-1"})
		if err != nil || seg.Source != numberd.SourceUpstream || seg.Ywlsh != "yw-1" {
			t.Fatalf("CompleteJob = %+v, %v", seg, err)
		}
		latest, ok, err := s.Refills().LatestJob(ctx, "p")
		if err != nil || !ok || latest.State != store.JobDone || latest.SegmentID != seg.ID {
			t.Errorf("LatestJob = %+v %v %v", latest, ok, err)
		}
		if _, ok, _ := s.Refills().OpenJob(ctx, "p"); ok {
			t.Error("a done job is still open")
		}
		// An overlapping grant leaves the job open and adds nothing.
		job2, err := s.Refills().CreateJob(ctx, "p", f2, "yw-3", 100)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Refills().CompleteJob(ctx, "p", f2, job2.ID, numberd.NewSegment{Range: mustRange(t, "0050", "0150"), Source: numberd.SourceUpstream, Ywlsh: "yw-3"}); !errors.Is(err, numberd.ErrOverlap) {
			t.Errorf("overlapping grant: err = %v, want ErrOverlap", err)
		}
		must(t, s.Refills().ReleaseLock(ctx, "p", "node-b", f2))
		if f3, err := s.Refills().AcquireLock(ctx, "p", "node-c", time.Hour); err != nil || f3 <= f2 {
			t.Errorf("acquire after release = %d, %v", f3, err)
		}
		jobs, err := s.Refills().Jobs(ctx, "p")
		if err != nil || len(jobs) != 2 {
			t.Errorf("Jobs = %+v, %v", jobs, err)
		}
	})
}
