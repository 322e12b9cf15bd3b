package store

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/segment"
)

// Gaps is the numbers known never to be handed out: ranges given up, abandoned,
// or possibly handed out by a state that was lost.
type Gaps struct {
	h *handle
}

type gapRow struct {
	Pool      string `db:"pool"`
	SegmentID int64  `db:"segment_id"`
	Lo        int64  `db:"lo"`
	Hi        int64  `db:"hi"`
	Reason    string `db:"reason"`
	At        int64  `db:"at"`
	Prefix    string `db:"prefix"`
	Digits    int    `db:"digits"`
}

// Add records a gap. A gap starting where one of the same segment already starts
// is the same gap recorded again, by a retry or by a second node, and is ignored.
func (gs *Gaps) Add(ctx context.Context, g numberd.Gap) error {
	return gs.h.inTx(ctx, func(tx *sqlx.Tx) error { return gs.add(ctx, tx, g, false) })
}

// add records g; trimmable marks a reseed's recovery gap, recorded wide, which
// Generations.TrimRecovery may narrow.
func (gs *Gaps) add(ctx context.Context, tx *sqlx.Tx, g numberd.Gap, trimmable bool) error {
	if g.Range.Lo > g.Range.Hi {
		return fmt.Errorf("%w: empty gap %d..%d", numberd.ErrInvalid, g.Range.Lo, g.Range.Hi)
	}
	at := g.At
	if at.IsZero() {
		at = gs.h.clock()
	}
	_, err := tx.ExecContext(ctx, gs.h.dialect.insertIgnore+" INTO gaps (pool, segment_id, lo, hi, reason, at, trimmable) VALUES (?, ?, ?, ?, ?, ?, ?)",
		g.Pool, g.SegmentID, g.Range.Lo, g.Range.Hi, g.Reason, at.UnixMicro(), boolInt(trimmable))
	return err
}

// AddOutside records the parts of g that no gap of its segment holds yet, and
// returns them: a range may be known lost twice (numbers an abandoned call took,
// then a reseed skipping past the same cursor), and a number is in one gap only.
// An abandoned gap is the more specific account, and it carves its range out of
// a recovery gap that holds it: the recovery gap says only that the numbers may
// have been handed out, and Generations.TrimRecovery later drops what the
// replaced state did take, which would otherwise uncover the abandoned call's
// numbers with it. A recovery gap recorded here (numbers a call took whose answer
// may have reached no one) carves its range out of a reseed's, for the same
// reason, and is never trimmed.
func (gs *Gaps) AddOutside(ctx context.Context, g numberd.Gap) (recorded []numberd.Gap, err error) {
	err = gs.h.inTx(ctx, func(tx *sqlx.Tx) error {
		recorded, err = gs.addOutside(ctx, tx, g, false)
		return err
	})
	return recorded, err
}

// heldGap is a recorded gap as addOutside reads it, its row locked.
type heldGap struct {
	ID     int64  `db:"id"`
	Lo     int64  `db:"lo"`
	Hi     int64  `db:"hi"`
	Reason string `db:"reason"`
	At     int64  `db:"at"`
	// Trimmable marks a reseed's recovery gap (see add).
	Trimmable bool `db:"trimmable"`
}

func (gs *Gaps) addOutside(ctx context.Context, tx *sqlx.Tx, g numberd.Gap, trimmable bool) ([]numberd.Gap, error) {
	var held []heldGap
	if err := tx.SelectContext(ctx, &held, "SELECT id, lo, hi, reason, at, trimmable FROM gaps WHERE segment_id = ? AND hi >= ? AND lo <= ? ORDER BY lo"+gs.h.dialect.forUpdate,
		g.SegmentID, g.Range.Lo, g.Range.Hi); err != nil {
		return nil, err
	}
	var out []numberd.Gap
	part := g
	for _, h := range held {
		if h.Reason == numberd.GapRecovery && (g.Reason == numberd.GapAbandoned || (g.Reason == numberd.GapRecovery && !trimmable && h.Trimmable)) {
			if err := gs.carve(ctx, tx, g, h); err != nil {
				return nil, err
			}
			continue
		}
		if h.Lo > part.Range.Lo {
			piece := part
			piece.Range.Hi = min(h.Lo-1, part.Range.Hi)
			out = append(out, piece)
		}
		part.Range.Lo = max(part.Range.Lo, h.Hi+1)
	}
	if part.Range.Lo <= part.Range.Hi {
		out = append(out, part)
	}
	for _, piece := range out {
		if err := gs.add(ctx, tx, piece, trimmable); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// carve takes g's range out of the recovery gap h, which overlaps it: what of h
// lies below g stays in h, what lies above it becomes a recovery gap of its own.
func (gs *Gaps) carve(ctx context.Context, tx *sqlx.Tx, g numberd.Gap, h heldGap) error {
	if h.Lo < g.Range.Lo {
		if _, err := tx.ExecContext(ctx, "UPDATE gaps SET hi = ? WHERE id = ?", g.Range.Lo-1, h.ID); err != nil {
			return err
		}
	} else if _, err := tx.ExecContext(ctx, "DELETE FROM gaps WHERE id = ?", h.ID); err != nil {
		return err
	}
	if h.Hi <= g.Range.Hi {
		return nil
	}
	above := numberd.Gap{Pool: g.Pool, SegmentID: g.SegmentID, Range: g.Range, Reason: numberd.GapRecovery, At: fromMicros(h.At)}
	above.Range.Lo, above.Range.Hi = g.Range.Hi+1, h.Hi
	return gs.add(ctx, tx, above, h.Trimmable)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// List returns the gaps of pool in the order they were recorded.
func (gs *Gaps) List(ctx context.Context, pool string) ([]numberd.Gap, error) {
	var rows []gapRow
	err := gs.h.db.SelectContext(ctx, &rows, `SELECT g.pool, g.segment_id, g.lo, g.hi, g.reason, g.at, s.prefix, p.digits
		FROM gaps g JOIN segments s ON s.id = g.segment_id JOIN pools p ON p.id = g.pool
		WHERE g.pool = ? ORDER BY g.id`, pool)
	if err != nil {
		return nil, gs.h.unavailable(err)
	}
	gaps := make([]numberd.Gap, len(rows))
	for i, r := range rows {
		gaps[i] = numberd.Gap{
			Pool: r.Pool, SegmentID: r.SegmentID,
			Range:  segment.Range{Prefix: r.Prefix, Lo: r.Lo, Hi: r.Hi, Width: r.Digits},
			Reason: r.Reason, At: fromMicros(r.At),
		}
	}
	return gaps, nil
}

// RecoveredBySegment returns, for every segment with recovery gaps, the numbers
// they hold: what a pool's status counts as lost, for all pools in one query.
func (gs *Gaps) RecoveredBySegment(ctx context.Context) (map[int64]int64, error) {
	var rows []struct {
		SegmentID int64 `db:"segment_id"`
		Numbers   int64 `db:"numbers"`
	}
	err := gs.h.db.SelectContext(ctx, &rows, `SELECT segment_id, SUM(hi - lo + 1) AS numbers
		FROM gaps WHERE reason = ? GROUP BY segment_id`, numberd.GapRecovery)
	if err != nil {
		return nil, gs.h.unavailable(err)
	}
	out := make(map[int64]int64, len(rows))
	for _, r := range rows {
		out[r.SegmentID] = r.Numbers
	}
	return out, nil
}
