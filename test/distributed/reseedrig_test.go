package distributed_test

import (
	"context"
	"database/sql"
	"sync"
	"testing"
	"time"

	"github.com/numberd/numberd/test/harness"
)

// leaseDisagreement leaves pool as a node killed between ReserveAt and lease.lua
// does: the store has reserved 50 numbers more than Redis's lease, and the next
// extension finds the two disagreeing and reseeds.
func leaseDisagreement(t *testing.T, dsn, pool string) {
	db, err := sql.Open("mysql", dsn)
	must(t, err)
	defer db.Close()
	_, err = db.ExecContext(context.Background(), "UPDATE segments SET reserved_hi = reserved_hi + 50 WHERE pool = ?", pool)
	must(t, err)
}

// keepAllocating has n allocate one number of pool every 10 ms, recorded in l,
// until the returned stop is called.
func keepAllocating(c *harness.Client, l *harness.Ledger, n *harness.Node, pool string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			nums, r, err := c.Allocate(context.Background(), n.URL(), pool, 1)
			if err == nil && r.Status == 200 {
				l.Record(n.Name(), nums)
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
