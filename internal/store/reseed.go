package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// lockPool reads pool's epoch with its row locked for the transaction.
func (s *Store) lockPool(ctx context.Context, tx *sqlx.Tx, pool string) (epoch int64, err error) {
	err = tx.GetContext(ctx, &epoch, "SELECT epoch FROM pools WHERE id = ?"+s.dialect.forUpdate, pool)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("%w: no pool %s", ErrPoolNotFound, pool)
	}
	return epoch, err
}

// ReserveAt is Reserve for the Redis state of generation epoch: it also fails with
// ErrConflict, applying nothing, if the pool has been reseeded since. In the same
// transaction it checkpoints cursors as SaveCursors does, so that a reseed after a
// loss skips little more than the reservations ahead of them.
func (s *Store) ReserveAt(ctx context.Context, pool string, epoch int64, rs []Reservation, cs []Cursor) error {
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		current, err := s.lockPool(ctx, tx, pool)
		if err != nil {
			return err
		}
		if current != epoch {
			return fmt.Errorf("%w: pool %s is at generation %d, not %d", ErrConflict, pool, current, epoch)
		}
		if err := s.reserve(ctx, tx, rs); err != nil {
			return err
		}
		return s.saveCursors(ctx, tx, cs, false)
	})
}

// Reseed starts a new generation of pool's Redis state, which resumes every open
// segment just above its durable high-water mark. What lies between a segment's
// checkpointed cursor and its mark may have been handed out by the lost state: it
// is recorded as a recovery gap and skipped. Reseed fails with ErrConflict if the
// pool is not at generation epoch any more, because another node reseeded first.
// It returns the new generation and the pool's segments afterwards.
func (s *Store) Reseed(ctx context.Context, pool string, epoch int64) (next int64, segs []Segment, gaps []Gap, err error) {
	err = s.inTx(ctx, func(tx *sqlx.Tx) error {
		current, err := s.lockPool(ctx, tx, pool)
		if err != nil {
			return err
		}
		if current != epoch {
			return fmt.Errorf("%w: pool %s is at generation %d, not %d", ErrConflict, pool, current, epoch)
		}
		var rows []segmentRow
		if err := tx.SelectContext(ctx, &rows, segmentSelect+"WHERE s.pool = ? ORDER BY s.id", pool); err != nil {
			return err
		}
		at := s.Now()
		for _, r := range rows {
			seg := r.segment()
			if seg.State != StateOpen || seg.Next > seg.ReservedHi {
				segs = append(segs, seg)
				continue
			}
			gap := Gap{Pool: pool, SegmentID: seg.ID, Range: seg.Range, Reason: GapRecovery, At: at}
			gap.Range.Lo, gap.Range.Hi = seg.Next, seg.ReservedHi
			if err := s.addGap(ctx, tx, gap); err != nil {
				return err
			}
			gaps = append(gaps, gap)
			seg.Next = seg.ReservedHi + 1
			if seg.Next > seg.Range.Hi {
				seg.State = StateExhausted
			}
			if _, err := tx.ExecContext(ctx, "UPDATE segments SET next = ?, state = ? WHERE id = ?", seg.Next, seg.State, seg.ID); err != nil {
				return err
			}
			segs = append(segs, seg)
		}
		next = epoch + 1
		_, err = tx.ExecContext(ctx, "UPDATE pools SET epoch = ? WHERE id = ?", next, pool)
		return err
	})
	return next, segs, gaps, err
}
