package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/numberd/numberd"
)

type poolRow struct {
	ID              string         `db:"id"`
	Digits          int            `db:"digits"`
	RefillThreshold int64          `db:"refill_threshold"`
	Upstream        sql.NullString `db:"upstream"`
	RefillQuantity  sql.NullInt64  `db:"refill_quantity"`
	Epoch           int64          `db:"epoch"`
	CreatedAt       int64          `db:"created_at"`
	UpdatedAt       int64          `db:"updated_at"`
}

func (r poolRow) pool() numberd.Pool {
	return numberd.Pool{
		ID: r.ID, Digits: r.Digits, RefillThreshold: r.RefillThreshold,
		Upstream: r.Upstream.String, RefillQuantity: r.RefillQuantity.Int64, Epoch: r.Epoch,
		CreatedAt: fromMicros(r.CreatedAt), UpdatedAt: fromMicros(r.UpdatedAt),
	}
}

const poolColumns = "id, digits, refill_threshold, upstream, refill_quantity, epoch, created_at, updated_at"

// PutPool creates pool id, or updates its settings if it exists, and reports whether
// it created it. It returns ErrInvalid if Digits is missing on create or differs from
// the pool's on update: a pool's width never changes.
func (s *Store) PutPool(ctx context.Context, id string, u numberd.PoolUpdate) (pool numberd.Pool, created bool, err error) {
	err = s.h.inTx(ctx, func(tx *sqlx.Tx) error {
		created = false
		// A new pool is looked for without a lock and inserted: a locking read of
		// a missing row would lock the gap it would go in, and concurrent creates
		// holding such gap locks deadlock on each other's inserts.
		var row poolRow
		err := tx.GetContext(ctx, &row, "SELECT "+poolColumns+" FROM pools WHERE id = ?", id)
		if errors.Is(err, sql.ErrNoRows) {
			if u.Digits == nil {
				return fmt.Errorf("%w: digits is required to create pool %s", numberd.ErrInvalid, id)
			}
			now := s.h.now()
			row = poolRow{ID: id, Digits: *u.Digits, RefillThreshold: numberd.DefaultRefillThreshold, CreatedAt: now, UpdatedAt: now}
			row.apply(u)
			_, err = tx.NamedExecContext(ctx, "INSERT INTO pools ("+poolColumns+") VALUES (:id, :digits, :refill_threshold, :upstream, :refill_quantity, :epoch, :created_at, :updated_at)", row)
			if err == nil {
				created, pool = true, row.pool()
				return nil
			}
			if !s.h.dialect.isDuplicate(err) {
				return err
			}
			// Another caller created it meanwhile: update it as it is now (a
			// locking read sees the latest row, not the transaction's snapshot).
		} else if err != nil {
			return err
		}
		if err := tx.GetContext(ctx, &row, "SELECT "+poolColumns+" FROM pools WHERE id = ?"+s.h.dialect.forUpdate, id); err != nil {
			return err
		}
		if u.Digits != nil && *u.Digits != row.Digits {
			return fmt.Errorf("%w: digits of pool %s is %d and cannot change", numberd.ErrInvalid, id, row.Digits)
		}
		row.apply(u)
		row.UpdatedAt = s.h.now()
		_, err = tx.NamedExecContext(ctx, "UPDATE pools SET refill_threshold = :refill_threshold, upstream = :upstream, refill_quantity = :refill_quantity, updated_at = :updated_at WHERE id = :id", row)
		pool = row.pool()
		return err
	})
	return pool, created, err
}

func (r *poolRow) apply(u numberd.PoolUpdate) {
	if u.RefillThreshold != nil {
		r.RefillThreshold = *u.RefillThreshold
	}
	if u.Upstream != nil {
		r.Upstream = nullString(*u.Upstream)
	}
	if u.RefillQuantity != nil {
		r.RefillQuantity = sql.NullInt64{Int64: *u.RefillQuantity, Valid: *u.RefillQuantity > 0}
	}
}

// Pool returns pool id, or ErrPoolNotFound.
func (s *Store) Pool(ctx context.Context, id string) (numberd.Pool, error) {
	var row poolRow
	err := s.h.db.GetContext(ctx, &row, "SELECT "+poolColumns+" FROM pools WHERE id = ?", id)
	if errors.Is(err, sql.ErrNoRows) {
		return numberd.Pool{}, fmt.Errorf("%w: no pool %s", numberd.ErrPoolNotFound, id)
	}
	if err != nil {
		return numberd.Pool{}, s.h.unavailable(err)
	}
	return row.pool(), nil
}

// Pools returns every pool, ordered by id.
func (s *Store) Pools(ctx context.Context) ([]numberd.Pool, error) {
	var rows []poolRow
	if err := s.h.db.SelectContext(ctx, &rows, "SELECT "+poolColumns+" FROM pools ORDER BY id"); err != nil {
		return nil, s.h.unavailable(err)
	}
	pools := make([]numberd.Pool, len(rows))
	for i, r := range rows {
		pools[i] = r.pool()
	}
	return pools, nil
}
