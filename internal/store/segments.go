package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/jmoiron/sqlx"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/segment"
)

type segmentRow struct {
	ID         int64          `db:"id"`
	Pool       string         `db:"pool"`
	Prefix     string         `db:"prefix"`
	Lo         int64          `db:"lo"`
	Hi         int64          `db:"hi"`
	State      string         `db:"state"`
	Source     string         `db:"source"`
	Ref        sql.NullString `db:"ref"`
	Ywlsh      sql.NullString `db:"ywlsh"`
	ExpiresAt  sql.NullInt64  `db:"expires_at"`
	ReservedHi int64          `db:"reserved_hi"`
	Next       int64          `db:"next"`
	Held       int64          `db:"held"`
	CreatedAt  int64          `db:"created_at"`
	Digits     int            `db:"digits"`
	Epoch      int64          `db:"epoch"`
}

func (r segmentRow) segment() numberd.Segment {
	return numberd.Segment{
		ID: r.ID, Pool: r.Pool,
		Range: segment.Range{Prefix: r.Prefix, Lo: r.Lo, Hi: r.Hi, Width: r.Digits},
		State: r.State, Source: r.Source, Ref: r.Ref.String, Ywlsh: r.Ywlsh.String,
		ExpiresAt: fromNullMicros(r.ExpiresAt), ReservedHi: r.ReservedHi, Next: r.Next,
		CreatedAt: fromMicros(r.CreatedAt), Epoch: r.Epoch,
	}
}

const segmentSelect = "SELECT s.id, s.pool, s.prefix, s.lo, s.hi, s.state, s.source, s.ref, s.ywlsh, s.expires_at, s.reserved_hi, s.next, s.held, s.created_at, p.digits, p.epoch FROM segments s JOIN pools p ON p.id = s.pool "

// AddSegment adds a segment to pool, after every segment the pool has. Adding a
// segment identical (same start and end) to one the pool has returns that segment
// with created false and changes nothing. It returns ErrPoolNotFound, ErrInvalid if
// the width is not the pool's, and ErrOverlap if the range shares a number with any
// segment the pool ever had.
func (s *Store) AddSegment(ctx context.Context, pool string, n numberd.NewSegment) (seg numberd.Segment, created bool, err error) {
	err = s.h.inTx(ctx, func(tx *sqlx.Tx) error {
		// Locking the pool row serialises segment loads of one pool, so two
		// overlapping loads cannot both pass the overlap check.
		var digits int
		err := tx.GetContext(ctx, &digits, "SELECT digits FROM pools WHERE id = ?"+s.h.dialect.forUpdate, pool)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: no pool %s", numberd.ErrPoolNotFound, pool)
		}
		if err != nil {
			return err
		}
		seg, created, err = s.addSegment(ctx, tx, pool, digits, n)
		return err
	})
	return seg, created, err
}

// addSegment adds n to pool, whose row the transaction has locked.
func (s *Store) addSegment(ctx context.Context, tx *sqlx.Tx, pool string, digits int, n numberd.NewSegment) (numberd.Segment, bool, error) {
	if n.Range.Width != digits {
		return numberd.Segment{}, false, fmt.Errorf("%w: pool %s has %d-digit numbers, the segment %d-digit ones", numberd.ErrInvalid, pool, digits, n.Range.Width)
	}
	var clash []segmentRow
	err := tx.SelectContext(ctx, &clash, segmentSelect+"WHERE s.pool = ? AND s.prefix = ? AND s.lo <= ? AND s.hi >= ? ORDER BY s.id LIMIT 1",
		pool, n.Range.Prefix, n.Range.Hi, n.Range.Lo)
	if err != nil {
		return numberd.Segment{}, false, err
	}
	if len(clash) > 0 {
		old := clash[0].segment()
		if old.Range == n.Range {
			return old, false, nil
		}
		return numberd.Segment{}, false, fmt.Errorf("%w: %s overlaps segment %d (%s)", numberd.ErrOverlap, n.Range, old.ID, old.Range)
	}
	row := segmentRow{
		Pool: pool, Prefix: n.Range.Prefix, Lo: n.Range.Lo, Hi: n.Range.Hi,
		State: numberd.SegmentOpen, Source: n.Source, Ref: nullString(n.Ref), Ywlsh: nullString(n.Ywlsh),
		ExpiresAt: nullMicros(n.ExpiresAt), ReservedHi: n.Range.Lo - 1, Next: n.Range.Lo,
		CreatedAt: s.h.now(), Digits: digits,
	}
	res, err := tx.NamedExecContext(ctx, `INSERT INTO segments (pool, prefix, lo, hi, state, source, ref, ywlsh, expires_at, reserved_hi, next, created_at)
		VALUES (:pool, :prefix, :lo, :hi, :state, :source, :ref, :ywlsh, :expires_at, :reserved_hi, :next, :created_at)`, row)
	if err != nil {
		return numberd.Segment{}, false, err
	}
	if row.ID, err = res.LastInsertId(); err != nil {
		return numberd.Segment{}, false, err
	}
	return row.segment(), true, nil
}

// Segments returns the segments of pool in the order they were added, which is the
// order numbers are drawn from them. A pool without segments, or no pool, gives none.
func (s *Store) Segments(ctx context.Context, pool string) ([]numberd.Segment, error) {
	var rows []segmentRow
	if err := s.h.db.SelectContext(ctx, &rows, segmentSelect+"WHERE s.pool = ? ORDER BY s.id", pool); err != nil {
		return nil, s.h.unavailable(err)
	}
	segs := make([]numberd.Segment, len(rows))
	for i, r := range rows {
		segs[i] = r.segment()
	}
	return segs, nil
}

// AllSegments returns the segments of every pool, each pool's in order of id: one
// query for a listing of all pools.
func (s *Store) AllSegments(ctx context.Context) (map[string][]numberd.Segment, error) {
	var rows []segmentRow
	if err := s.h.db.SelectContext(ctx, &rows, segmentSelect+"ORDER BY s.pool, s.id"); err != nil {
		return nil, s.h.unavailable(err)
	}
	segs := map[string][]numberd.Segment{}
	for _, r := range rows {
		segs[r.Pool] = append(segs[r.Pool], r.segment())
	}
	return segs, nil
}

// OpenSegments returns the open segments of pools, by pool, each pool's in order
// of id, in one query per thousand pools: what a node refreshes every checkpoint
// of the pools it knows, however many they are.
func (s *Store) OpenSegments(ctx context.Context, pools []string) (map[string][]numberd.Segment, error) {
	segs := map[string][]numberd.Segment{}
	for len(pools) > 0 {
		n := min(len(pools), 1000)
		args := []any{numberd.SegmentOpen}
		for _, p := range pools[:n] {
			args = append(args, p)
		}
		pools = pools[n:]
		var rows []segmentRow
		q := segmentSelect + "WHERE s.state = ? AND s.pool IN (?" + strings.Repeat(", ?", n-1) + ") ORDER BY s.pool, s.id"
		if err := s.h.db.SelectContext(ctx, &rows, q, args...); err != nil {
			return nil, s.h.unavailable(err)
		}
		for _, r := range rows {
			segs[r.Pool] = append(segs[r.Pool], r.segment())
		}
	}
	return segs, nil
}

// Segment returns segment id of pool, or ErrSegmentNotFound.
func (s *Store) Segment(ctx context.Context, pool string, id int64) (numberd.Segment, error) {
	var row segmentRow
	err := s.h.db.GetContext(ctx, &row, segmentSelect+"WHERE s.pool = ? AND s.id = ?", pool, id)
	if errors.Is(err, sql.ErrNoRows) {
		return numberd.Segment{}, fmt.Errorf("%w: pool %[3]s has no segment %[2]d", numberd.ErrSegmentNotFound, id, pool)
	}
	if err != nil {
		return numberd.Segment{}, s.h.unavailable(err)
	}
	return row.segment(), nil
}

// Reservation raises one segment's durable high-water mark from From to To.
type Reservation struct {
	SegmentID int64
	From, To  int64
}

// Reserve applies the reservations in one transaction, each as a compare-and-set on
// the segment's high-water mark. If any segment's mark is not From any more, nothing
// is applied and Reserve returns ErrConflict. In the same transaction it checkpoints
// cursors as SaveCursors does, so that recovery after a crash skips little more
// than the reservations ahead of them.
func (s *Store) Reserve(ctx context.Context, rs []Reservation, cs []Cursor) error {
	return s.h.inTx(ctx, func(tx *sqlx.Tx) error {
		if err := reserve(ctx, tx, rs); err != nil {
			return err
		}
		return saveCursors(ctx, tx, cs, false)
	})
}

// reserve applies rs in tx; see Reserve.
func reserve(ctx context.Context, tx *sqlx.Tx, rs []Reservation) error {
	for _, r := range rs {
		if r.To <= r.From {
			return fmt.Errorf("%w: reservation of segment %d would not rise (%d to %d)", numberd.ErrInvalid, r.SegmentID, r.From, r.To)
		}
		res, err := tx.ExecContext(ctx, "UPDATE segments SET reserved_hi = ? WHERE id = ? AND reserved_hi = ? AND hi >= ?", r.To, r.SegmentID, r.From, r.To)
		if err != nil {
			return err
		}
		// MySQL counts matched rows here: OpenMySQL sets clientFoundRows.
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return fmt.Errorf("%w: segment %d is not reserved up to %d any more", ErrConflict, r.SegmentID, r.From)
		}
	}
	return nil
}

// Cursor is a segment's allocation state as its only writer knows it.
type Cursor struct {
	SegmentID int64
	Next      int64
	// Held is how many numbers below Next may be in neither an answer nor a gap
	// yet (calls of unknown outcome, to be settled): a reseed's recovery gap
	// starts that far below the cursor.
	Held int64
}

// SaveCursors checkpoints cursors, never moving one back, and marks the open
// segments whose cursor passed their end as exhausted.
func (s *Store) SaveCursors(ctx context.Context, cs []Cursor) error {
	return s.writeCursors(ctx, cs, false)
}

// ReleaseReservations checkpoints cursors like SaveCursors and lowers each
// segment's high-water mark to just below its cursor. It is for the embedded engine
// at a clean stop, the only writer of its store, which hands back the reserved
// numbers it did not issue so that a restart skips none of them. Nothing else may
// ever lower a high-water mark.
func (s *Store) ReleaseReservations(ctx context.Context, cs []Cursor) error {
	return s.writeCursors(ctx, cs, true)
}

func (s *Store) writeCursors(ctx context.Context, cs []Cursor, release bool) error {
	return s.h.inTx(ctx, func(tx *sqlx.Tx) error { return saveCursors(ctx, tx, cs, release) })
}

// saveCursors checkpoints cs in tx; see SaveCursors and ReleaseReservations.
func saveCursors(ctx context.Context, tx *sqlx.Tx, cs []Cursor, release bool) error {
	if release {
		q := "UPDATE segments SET next = ?, reserved_hi = ? - 1, state = CASE WHEN state = ? AND ? > hi THEN ? ELSE state END WHERE id = ?"
		for _, c := range cs {
			if _, err := tx.ExecContext(ctx, q, c.Next, c.Next, numberd.SegmentOpen, c.Next, numberd.SegmentExhausted, c.SegmentID); err != nil {
				return err
			}
		}
		return nil
	}
	// One statement per few hundred cursors: every node checkpoints every pool it
	// serves each second, and a statement per segment would grow with them.
	highest := map[int64]Cursor{}
	var ids []int64
	for _, c := range cs {
		h, ok := highest[c.SegmentID]
		if !ok {
			ids = append(ids, c.SegmentID)
		}
		if !ok || c.Next > h.Next || (c.Next == h.Next && c.Held > h.Held) {
			highest[c.SegmentID] = c
		}
	}
	for len(ids) > 0 {
		n := min(len(ids), 300)
		chunk := ids[:n]
		ids = ids[n:]
		value := "CASE id" + strings.Repeat(" WHEN ? THEN ?", n) + " END"
		var pairs, helds, in []any
		for _, id := range chunk {
			pairs = append(pairs, id, highest[id].Next)
			helds = append(helds, id, highest[id].Held)
			in = append(in, id)
		}
		// held first: MySQL assigns left to right, each assignment seeing the
		// ones before it, and held goes with the cursor it was seen below: a
		// checkpoint that does not move the cursor on leaves it to a newer one.
		q := "UPDATE segments SET held = CASE WHEN next > " + value + " THEN held ELSE " + value + " END, " +
			"next = CASE WHEN next > " + value + " THEN next ELSE " + value + " END, " +
			"state = CASE WHEN state = ? AND " + value + " > hi THEN ? ELSE state END " +
			"WHERE id IN (?" + strings.Repeat(", ?", n-1) + ")"
		args := append(append(append(append([]any{}, pairs...), helds...), pairs...), pairs...)
		args = append(append(append(args, numberd.SegmentOpen), pairs...), numberd.SegmentExhausted)
		args = append(args, in...)
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return err
		}
	}
	return nil
}

// CloseSegment moves an open segment to state (StateExhausted, StateRetired or
// StateExpired) with its cursor at next, and records gap, if any, in the same
// transaction. It reports false and changes nothing if the segment was not open.
func (s *Store) CloseSegment(ctx context.Context, id int64, state string, next int64, gap *numberd.Gap) (changed bool, err error) {
	err = s.h.inTx(ctx, func(tx *sqlx.Tx) error {
		changed, err = s.closeSegment(ctx, tx, id, state, next, gap)
		return err
	})
	return changed, err
}

func (s *Store) closeSegment(ctx context.Context, tx *sqlx.Tx, id int64, state string, next int64, gap *numberd.Gap) (bool, error) {
	res, err := tx.ExecContext(ctx, "UPDATE segments SET state = ?, next = ? WHERE id = ? AND state = ?", state, next, id, numberd.SegmentOpen)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	if err != nil || n == 0 {
		return false, err
	}
	if gap != nil {
		if err := s.gaps.add(ctx, tx, *gap, false); err != nil {
			return false, err
		}
	}
	return true, nil
}
