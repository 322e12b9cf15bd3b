package store

import (
	"context"
	"math/rand/v2"
	"time"
)

// Retries of transient failures (see dialect.transient). Eight attempts, with
// waits drawn up to 5, 10, 20 … 160 ms between them, wait half a second at most
// in all: a deadlock between a few writers clears in one or two, and a caller's
// deadline ends the wait sooner.
const (
	retryAttempts = 8
	retryBackoff  = 5 * time.Millisecond
	retryCeiling  = 160 * time.Millisecond
)

// retry runs op until it succeeds, fails for another reason than a transient one,
// has been made retryAttempts times, or ctx ends; it returns op's last error.
// Between attempts it waits a random time up to a bound that doubles each time
// (full jitter), so writers that collided do not collide again in step. op must
// be safe to run again after a transient failure: a statement that failed, or a
// whole transaction that was rolled back.
func (h *handle) retry(ctx context.Context, op func() error) error {
	bound := retryBackoff
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil || attempt == retryAttempts || h.dialect.transient == nil || !h.dialect.transient(err) {
			return err
		}
		t := time.NewTimer(rand.N(bound) + 1)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
		bound = min(2*bound, retryCeiling)
	}
}
