package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/store"
	"github.com/numberd/numberd/internal/testenv"
)

// TestConcurrentPutPoolCreatesOnce has 32 callers create 16 pools at once, two
// callers a pool: InnoDB used to answer some of them with a deadlock (gap locks of
// the missing rows). Every call must succeed, and exactly one of each pool's two
// callers is told it created the pool, however often a transaction ran.
func TestConcurrentPutPoolCreatesOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *store.Store) {
		const pools, rounds = 16, 4
		var created [rounds][pools]atomic.Int32
		var wg sync.WaitGroup
		for w := range 2 * pools {
			wg.Go(func() {
				for r := range rounds {
					id := fmt.Sprintf("p-%d-%02d", r, w%pools)
					_, c, err := s.PutPool(context.Background(), id, numberd.PoolUpdate{Digits: ptr(20), RefillThreshold: ptr(int64(7))})
					if err != nil {
						t.Errorf("PutPool(%s): %v", id, err)
						continue
					}
					if c {
						created[r][w%pools].Add(1)
					}
				}
			})
		}
		wg.Wait()
		for r := range rounds {
			for p := range pools {
				if n := created[r][p].Load(); n != 1 {
					t.Errorf("pool p-%d-%02d: %d callers told they created it, want 1", r, p, n)
				}
			}
		}
		all, err := s.Pools(context.Background())
		if err != nil || len(all) != pools*rounds {
			t.Fatalf("Pools = %d pools, %v; want %d", len(all), err, pools*rounds)
		}
	})
}

// lockWaitStore opens a MySQL store whose sessions wait one second for a row lock
// (innodb_lock_wait_timeout=1) and a plain connection to the same database, so a
// test can hold a lock past the timeout.
func lockWaitStore(t *testing.T) (*store.Store, *sql.DB) {
	t.Helper()
	cfg, err := mysql.ParseDSN(testenv.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	cfg.Params = map[string]string{"innodb_lock_wait_timeout": "1"}
	s, err := store.OpenMySQL(context.Background(), cfg.FormatDSN(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, db
}

// holdPoolRow locks pool's row from db for hold, then lets it go.
func holdPoolRow(t *testing.T, db *sql.DB, pool string, hold time.Duration) {
	t.Helper()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "SELECT id FROM pools WHERE id = ? FOR UPDATE", pool); err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(hold, func() { _ = tx.Rollback() })
	t.Cleanup(func() { _ = tx.Rollback() }) // the database is dropped only once the lock is gone
}

// TestMySQLLockWaitTimeoutIsRetried holds a pool's row longer than the server's
// lock wait timeout while the store writes it, in a transaction and in a single
// statement: the first attempt fails with error 1205, which the caller must
// never see; a later one succeeds once the lock is gone.
func TestMySQLLockWaitTimeoutIsRetried(t *testing.T) {
	s, db := lockWaitStore(t)
	ctx := context.Background()
	mustPool(t, s, "p", 4)
	fence, err := s.Refills().AcquireLock(ctx, "p", "node-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	const hold = 1500 * time.Millisecond
	calls := []struct {
		name string
		call func() error
	}{
		{"PutPool (a transaction)", func() error {
			_, _, err := s.PutPool(ctx, "p", numberd.PoolUpdate{RefillThreshold: ptr(int64(9))})
			return err
		}},
		{"RenewRefillLock (a statement)", func() error { return s.Refills().RenewLock(ctx, "p", "node-a", fence, time.Minute) }},
	}
	for _, c := range calls {
		holdPoolRow(t, db, "p", hold)
		start := time.Now()
		err := c.call()
		took := time.Since(start)
		if err != nil {
			t.Errorf("%s with the row held %v: %v, want it retried past the lock wait timeout", c.name, hold, err)
		}
		// Under the hold it could only have succeeded after a lock wait timeout.
		if took < time.Second {
			t.Errorf("%s took %v: the row was not held, and nothing was retried", c.name, took)
		}
	}
	p, err := s.Pool(ctx, "p")
	if err != nil || p.RefillThreshold != 9 {
		t.Errorf("Pool = %+v, %v; want refill threshold 9", p, err)
	}
}
