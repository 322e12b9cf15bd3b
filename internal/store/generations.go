package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/numberd/numberd"
)

// Generations is the writes of distributed mode that hold only while a pool's
// Redis state is at the generation they carry, and the reseeds that start a new
// one. Each checks the pool's generation with its row locked, in the
// transaction that writes.
type Generations struct {
	h    *handle
	segs *Store
	gaps *Gaps
}

// lockPool reads pool's epoch with its row locked for the transaction.
func (g *Generations) lockPool(ctx context.Context, tx *sqlx.Tx, pool string) (epoch int64, err error) {
	err = tx.GetContext(ctx, &epoch, "SELECT epoch FROM pools WHERE id = ?"+g.h.dialect.forUpdate, pool)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("%w: no pool %s", numberd.ErrPoolNotFound, pool)
	}
	return epoch, err
}

// ReserveAt is Store.Reserve for the Redis state of generation epoch: it also
// fails with ErrConflict, applying nothing, if the pool has been reseeded since.
// In the same transaction it checkpoints cursors as Store.SaveCursors does, so
// that a reseed after a loss skips little more than the reservations ahead of them.
func (g *Generations) ReserveAt(ctx context.Context, pool string, epoch int64, rs []Reservation, cs []Cursor) error {
	return g.h.inTx(ctx, func(tx *sqlx.Tx) error {
		current, err := g.lockPool(ctx, tx, pool)
		if err != nil {
			return err
		}
		if current != epoch {
			return fmt.Errorf("%w: pool %s is at generation %d, not %d", ErrConflict, pool, current, epoch)
		}
		if err := reserve(ctx, tx, rs); err != nil {
			return err
		}
		return saveCursors(ctx, tx, cs, false)
	})
}

// CloseSegmentAt is Store.CloseSegment for a close that the Redis state of
// generation epoch reported: it fails with ErrConflict, changing nothing, if the
// pool has been reseeded since. A reseed resumes the segment above its high-water
// mark, so next, counted under the older generation, no longer bounds what went out.
func (g *Generations) CloseSegmentAt(ctx context.Context, pool string, epoch, id int64, state string, next int64, gap *numberd.Gap) (changed bool, err error) {
	err = g.h.inTx(ctx, func(tx *sqlx.Tx) error {
		current, err := g.lockPool(ctx, tx, pool)
		if err != nil {
			return err
		}
		if current != epoch {
			return fmt.Errorf("%w: pool %s is at generation %d, not %d", ErrConflict, pool, current, epoch)
		}
		changed, err = g.segs.closeSegment(ctx, tx, id, state, next, gap)
		return err
	})
	return changed, err
}

// Reseed starts a new generation of pool's Redis state, which resumes every open
// segment just above the highest mark anyone has observed: its durable high-water
// mark, and floors[id], the next number by what Redis shows or a node saw. A floor
// above the high-water mark means the store went back in time (restored from a
// backup): the mark is raised to it, so nothing at or below it is reserved again.
// What lies between a segment's checkpointed cursor and where it resumes may have
// been handed out by the lost state: it is recorded as a recovery gap, except the
// parts already inside a gap, and skipped. The caller narrows the gap with
// TrimRecovery once it learns how far a replaced state went: recorded here, in
// the transaction that moves the cursor past it, the gap survives the caller. The new generation is epoch + 1, or
// minGen if that is higher (a generation seen in Redis or by a node that this
// store does not remember). Reseed fails with ErrConflict if the pool is not at
// generation epoch any more, because another node reseeded first. It returns the
// new generation, the pool's segments afterwards and the gaps it recorded.
func (g *Generations) Reseed(ctx context.Context, pool string, epoch, minGen int64, floors map[int64]int64) (next int64, segs []numberd.Segment, gaps []numberd.Gap, err error) {
	err = g.h.inTx(ctx, func(tx *sqlx.Tx) error {
		segs, gaps = nil, nil
		current, err := g.lockPool(ctx, tx, pool)
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
		at := g.h.clock()
		for _, r := range rows {
			seg := r.segment()
			resume := max(seg.Next, seg.ReservedHi+1, floors[seg.ID])
			used := seg.State == numberd.SegmentExhausted && r.Held > 0 // its last calls' memos went with the state
			if !used && (seg.State != numberd.SegmentOpen || (resume == seg.Next && r.Held == 0)) {
				segs = append(segs, seg)
				continue
			}
			if used {
				resume = seg.Next
			}
			gap := numberd.Gap{Pool: pool, SegmentID: seg.ID, Range: seg.Range, Reason: numberd.GapRecovery, At: at}
			// From below the cursor by what it held: numbers of calls whose
			// answers may have reached no one, known only to the lost state.
			gap.Range.Lo, gap.Range.Hi = max(seg.Next-r.Held, seg.Range.Lo), min(resume-1, seg.Range.Hi)
			recorded, err := g.gaps.addOutside(ctx, tx, gap, true)
			if err != nil {
				return err
			}
			gaps = append(gaps, recorded...)
			seg.Next = resume
			seg.ReservedHi = max(seg.ReservedHi, min(resume-1, seg.Range.Hi))
			if seg.Next > seg.Range.Hi {
				seg.State = numberd.SegmentExhausted
			}
			if _, err := tx.ExecContext(ctx, "UPDATE segments SET next = ?, held = 0, reserved_hi = ?, state = ? WHERE id = ?", seg.Next, seg.ReservedHi, seg.State, seg.ID); err != nil {
				return err
			}
			segs = append(segs, seg)
		}
		next = max(epoch+1, minGen)
		for i := range segs {
			segs[i].Epoch = next
		}
		_, err = tx.ExecContext(ctx, "UPDATE pools SET epoch = ? WHERE id = ?", next, pool)
		return err
	})
	return next, segs, gaps, err
}

// Trim narrows a recovery gap that Reseed recorded of one segment, Lo..Hi (the
// pieces it returned), to start at From: the numbers below From turned out to
// have been handed out by the state the reseed replaced, before it was replaced.
type Trim struct {
	SegmentID int64
	Lo, Hi    int64
	From      int64
}

// TrimRecovery applies trims to the recovery gaps reseeds recorded of pool (no
// other recovery gap, see Gaps.AddOutside), in one transaction: the
// pieces of a trim's range that end below its From are deleted, and the one that
// holds From starts there. Applying a trim again changes nothing, so a failed one
// is retried whole; a trim never reaches a gap outside its range.
func (g *Generations) TrimRecovery(ctx context.Context, pool string, trims []Trim) error {
	return g.h.inTx(ctx, func(tx *sqlx.Tx) error {
		for _, t := range trims {
			if _, err := tx.ExecContext(ctx, "DELETE FROM gaps WHERE pool = ? AND segment_id = ? AND reason = ? AND trimmable = 1 AND lo >= ? AND hi <= ? AND hi < ?",
				pool, t.SegmentID, numberd.GapRecovery, t.Lo, t.Hi, t.From); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "UPDATE gaps SET lo = ? WHERE pool = ? AND segment_id = ? AND reason = ? AND trimmable = 1 AND lo >= ? AND lo < ? AND hi >= ? AND hi <= ?",
				t.From, pool, t.SegmentID, numberd.GapRecovery, t.Lo, t.From, t.From, t.Hi); err != nil {
				return err
			}
		}
		return nil
	})
}
