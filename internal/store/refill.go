package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/numberd/numberd"
)

var (
	// ErrHeld means another holder has the pool's refill lock.
	ErrHeld = errors.New("store: refill lock held by another node")
	// ErrFenced means a refill write carried a fencing token older than the pool's:
	// its writer lost the lock, and another node may be refilling.
	ErrFenced = errors.New("store: stale fencing token")
)

// Refills is the refill lock of each pool, with its fencing token, and the
// download jobs written under it.
type Refills struct {
	h    *handle
	segs *Store
}

// Refill job states.
const (
	JobRequesting = "requesting"
	JobDone       = "done"
	JobFailed     = "failed"
)

// Job is one download from an upstream, written before its first call.
type Job struct {
	ID        int64
	Pool      string
	Ywlsh     string
	Quantity  int64
	State     string // JobRequesting, JobDone or JobFailed
	Attempts  int
	LastError string
	Fence     int64 // the fencing token it was created under
	SegmentID int64 // the segment it brought, once done
	CreatedAt time.Time
	UpdatedAt time.Time
}

type jobRow struct {
	ID        int64          `db:"id"`
	Pool      string         `db:"pool"`
	Ywlsh     string         `db:"ywlsh"`
	Quantity  int64          `db:"quantity"`
	State     string         `db:"state"`
	Attempts  int            `db:"attempts"`
	LastError sql.NullString `db:"last_error"`
	Fence     int64          `db:"fence"`
	SegmentID sql.NullInt64  `db:"segment_id"`
	CreatedAt int64          `db:"created_at"`
	UpdatedAt int64          `db:"updated_at"`
}

func (r jobRow) job() Job {
	return Job{
		ID: r.ID, Pool: r.Pool, Ywlsh: r.Ywlsh, Quantity: r.Quantity, State: r.State, Attempts: r.Attempts,
		LastError: r.LastError.String, Fence: r.Fence, SegmentID: r.SegmentID.Int64,
		CreatedAt: fromMicros(r.CreatedAt), UpdatedAt: fromMicros(r.UpdatedAt),
	}
}

const jobColumns = "id, pool, ywlsh, quantity, state, attempts, last_error, fence, segment_id, created_at, updated_at"

// AcquireLock takes pool's refill lock for owner for ttl, by the database's
// clock, if it is free or its lease has run out, and returns a fencing token higher
// than any before. It returns ErrHeld while another owner's lease runs.
func (rf *Refills) AcquireLock(ctx context.Context, pool, owner string, ttl time.Duration) (fence int64, err error) {
	err = rf.h.inTx(ctx, func(tx *sqlx.Tx) error {
		var row struct {
			Owner sql.NullString `db:"refill_owner"`
			Fence int64          `db:"refill_fence"`
			Until int64          `db:"refill_lease_until"`
			Now   int64          `db:"now"`
		}
		err := tx.GetContext(ctx, &row, "SELECT refill_owner, refill_fence, refill_lease_until, "+rf.h.dialect.nowMicros+" AS now FROM pools WHERE id = ?"+rf.h.dialect.forUpdate, pool)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: no pool %s", numberd.ErrPoolNotFound, pool)
		}
		if err != nil {
			return err
		}
		if row.Owner.Valid && row.Owner.String != owner && row.Until > row.Now {
			return ErrHeld
		}
		fence = row.Fence + 1
		_, err = tx.ExecContext(ctx, "UPDATE pools SET refill_owner = ?, refill_fence = ?, refill_lease_until = ? WHERE id = ?",
			owner, fence, row.Now+ttl.Microseconds(), pool)
		return err
	})
	return fence, err
}

// RenewLock extends the lease of the holder of fence by ttl from now. It
// returns ErrFenced if the lock has been taken since.
func (rf *Refills) RenewLock(ctx context.Context, pool, owner string, fence int64, ttl time.Duration) error {
	var res sql.Result
	err := rf.h.retry(ctx, func() (err error) {
		res, err = rf.h.db.ExecContext(ctx, "UPDATE pools SET refill_lease_until = "+rf.h.dialect.nowMicros+" + ? WHERE id = ? AND refill_owner = ? AND refill_fence = ?",
			ttl.Microseconds(), pool, owner, fence)
		return err
	})
	if err != nil {
		return rf.h.unavailable(err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return rf.h.unavailable(err)
	} else if n != 1 {
		return fmt.Errorf("%w: pool %s's refill lock was taken over", ErrFenced, pool)
	}
	return nil
}

// ReleaseLock frees pool's refill lock if fence still holds it.
func (rf *Refills) ReleaseLock(ctx context.Context, pool, owner string, fence int64) error {
	return rf.h.unavailable(rf.h.retry(ctx, func() error {
		_, err := rf.h.db.ExecContext(ctx, "UPDATE pools SET refill_owner = NULL, refill_lease_until = 0 WHERE id = ? AND refill_owner = ? AND refill_fence = ?",
			pool, owner, fence)
		return err
	}))
}

// fenced runs fn in a transaction that first checks, with the pool row locked,
// that fence is the pool's current fencing token; else it returns ErrFenced.
func (rf *Refills) fenced(ctx context.Context, pool string, fence int64, fn func(tx *sqlx.Tx, digits int) error) error {
	return rf.h.inTx(ctx, func(tx *sqlx.Tx) error {
		var row struct {
			Fence  int64 `db:"refill_fence"`
			Digits int   `db:"digits"`
		}
		err := tx.GetContext(ctx, &row, "SELECT refill_fence, digits FROM pools WHERE id = ?"+rf.h.dialect.forUpdate, pool)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: no pool %s", numberd.ErrPoolNotFound, pool)
		}
		if err != nil {
			return err
		}
		if row.Fence != fence {
			return fmt.Errorf("%w: pool %s is at fencing token %d, the write carries %d", ErrFenced, pool, row.Fence, fence)
		}
		return fn(tx, row.Digits)
	})
}

// OpenJob returns pool's download under way, if any.
func (rf *Refills) OpenJob(ctx context.Context, pool string) (Job, bool, error) {
	return rf.oneJob(ctx, "SELECT "+jobColumns+" FROM refill_jobs WHERE pool = ? AND state = ? ORDER BY id DESC LIMIT 1", pool, JobRequesting)
}

// LatestJob returns pool's most recent download, if any.
func (rf *Refills) LatestJob(ctx context.Context, pool string) (Job, bool, error) {
	return rf.oneJob(ctx, "SELECT "+jobColumns+" FROM refill_jobs WHERE pool = ? ORDER BY id DESC LIMIT 1", pool)
}

// Jobs returns pool's downloads, oldest first.
func (rf *Refills) Jobs(ctx context.Context, pool string) ([]Job, error) {
	var rows []jobRow
	if err := rf.h.db.SelectContext(ctx, &rows, "SELECT "+jobColumns+" FROM refill_jobs WHERE pool = ? ORDER BY id", pool); err != nil {
		return nil, rf.h.unavailable(err)
	}
	jobs := make([]Job, len(rows))
	for i, r := range rows {
		jobs[i] = r.job()
	}
	return jobs, nil
}

func (rf *Refills) oneJob(ctx context.Context, q string, args ...any) (Job, bool, error) {
	var row jobRow
	err := rf.h.db.GetContext(ctx, &row, q, args...)
	if errors.Is(err, sql.ErrNoRows) {
		return Job{}, false, nil
	}
	if err != nil {
		return Job{}, false, rf.h.unavailable(err)
	}
	return row.job(), true, nil
}

// CreateJob records a new download of quantity numbers under ywlsh, before its
// first call, unless one is under way: then it returns that one, to be resumed with
// its own ywlsh. It returns ErrFenced if fence is stale.
func (rf *Refills) CreateJob(ctx context.Context, pool string, fence int64, ywlsh string, quantity int64) (job Job, err error) {
	err = rf.fenced(ctx, pool, fence, func(tx *sqlx.Tx, _ int) error {
		var open []jobRow
		if err := tx.SelectContext(ctx, &open, "SELECT "+jobColumns+" FROM refill_jobs WHERE pool = ? AND state = ? ORDER BY id DESC LIMIT 1", pool, JobRequesting); err != nil {
			return err
		}
		if len(open) > 0 {
			job = open[0].job()
			return nil
		}
		now := rf.h.now()
		row := jobRow{Pool: pool, Ywlsh: ywlsh, Quantity: quantity, State: JobRequesting, Fence: fence, CreatedAt: now, UpdatedAt: now}
		res, err := tx.NamedExecContext(ctx, "INSERT INTO refill_jobs (pool, ywlsh, quantity, state, attempts, fence, created_at, updated_at) VALUES (:pool, :ywlsh, :quantity, :state, 0, :fence, :created_at, :updated_at)", row)
		if err != nil {
			return err
		}
		if row.ID, err = res.LastInsertId(); err != nil {
			return err
		}
		job = row.job()
		return nil
	})
	return job, err
}

// UpdateJob records an attempt's outcome: attempts made, the last error, and the
// state (JobRequesting to go on, JobFailed to give up). It returns ErrFenced if
// fence is stale.
func (rf *Refills) UpdateJob(ctx context.Context, pool string, fence, id int64, attempts int, lastError, state string) error {
	return rf.fenced(ctx, pool, fence, func(tx *sqlx.Tx, _ int) error {
		_, err := tx.ExecContext(ctx, "UPDATE refill_jobs SET attempts = ?, last_error = ?, state = ?, updated_at = ? WHERE id = ? AND pool = ? AND state = ?",
			attempts, nullString(truncate(lastError, 1024)), state, rf.h.now(), id, pool, JobRequesting)
		return err
	})
}

// CompleteJob adds the segment a download brought and marks the job done, in one
// transaction: a segment is stored once per ywlsh. It returns ErrFenced if fence is
// stale, and the errors of Store.AddSegment (ErrOverlap, ErrInvalid) leaving the job open.
func (rf *Refills) CompleteJob(ctx context.Context, pool string, fence, id int64, n numberd.NewSegment) (seg numberd.Segment, err error) {
	err = rf.fenced(ctx, pool, fence, func(tx *sqlx.Tx, digits int) error {
		var created bool
		seg, created, err = rf.segs.addSegment(ctx, tx, pool, digits, n)
		if err != nil {
			return err
		}
		if !created && seg.Ywlsh != n.Ywlsh {
			return fmt.Errorf("%w: %s is segment %d, loaded before by other means", numberd.ErrOverlap, n.Range, seg.ID)
		}
		_, err = tx.ExecContext(ctx, "UPDATE refill_jobs SET state = ?, segment_id = ?, updated_at = ? WHERE id = ? AND pool = ?",
			JobDone, seg.ID, rf.h.now(), id, pool)
		return err
	})
	return seg, err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
