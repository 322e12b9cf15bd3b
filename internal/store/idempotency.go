package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/numberd/numberd"
)

// Records is the idempotency records: the answers given to requests with an
// Idempotency-Key, kept to answer their retries alike.
type Records struct {
	h *handle
}

// IdempotencyRecord is the answer given to one Idempotency-Key, kept to answer it again.
type IdempotencyRecord struct {
	Pool  string
	Scope string // who may replay it: the caller's token, never in clear text
	Key   string
	// Fingerprint is the request's meaning after defaults; a replay must match it.
	Fingerprint string
	// Answer is the encoded answer, opaque to the store.
	Answer    string
	CreatedAt time.Time
	ExpiresAt time.Time
	// Fresh, on a record being kept, says its numbers were newly taken for it
	// rather than replayed from another copy: only then may it take the place of
	// an abandoned record (see Records.Keep). It is not stored.
	Fresh bool
}

// Abandoned reports whether rec is an abandoned record: one kept for a key
// whose numbers were given up (its call's outcome was unknown, and they are an
// abandoned gap now). Its key may be used again, with new numbers.
func (rec IdempotencyRecord) Abandoned() bool { return rec.Answer == "" }

type idempotencyRow struct {
	Pool        string `db:"pool"`
	Scope       string `db:"scope"`
	Key         string `db:"idem_key"`
	Fingerprint string `db:"fingerprint"`
	Answer      string `db:"numbers"`
	CreatedAt   int64  `db:"created_at"`
	ExpiresAt   int64  `db:"expires_at"`
}

func (row idempotencyRow) record() IdempotencyRecord {
	return IdempotencyRecord{
		Pool: row.Pool, Scope: row.Scope, Key: row.Key, Fingerprint: row.Fingerprint, Answer: row.Answer,
		CreatedAt: fromMicros(row.CreatedAt), ExpiresAt: fromMicros(row.ExpiresAt),
	}
}

func (rec IdempotencyRecord) row() idempotencyRow {
	return idempotencyRow{
		Pool: rec.Pool, Scope: rec.Scope, Key: rec.Key, Fingerprint: rec.Fingerprint, Answer: rec.Answer,
		CreatedAt: rec.CreatedAt.UnixMicro(), ExpiresAt: rec.ExpiresAt.UnixMicro(),
	}
}

// recordKey is what identifies a record: its pool, scope and key.
type recordKey [3]string

func (rec IdempotencyRecord) key() recordKey { return recordKey{rec.Pool, rec.Scope, rec.Key} }

func byRecordKey(rows []idempotencyRow) map[recordKey]IdempotencyRecord {
	m := make(map[recordKey]IdempotencyRecord, len(rows))
	for _, row := range rows {
		rec := row.record()
		m[rec.key()] = rec
	}
	return m
}

// keysIn is a WHERE condition matching the records of recs' keys, and its arguments.
func keysIn(recs []IdempotencyRecord) (string, []any) {
	args := make([]any, 0, 3*len(recs))
	for _, rec := range recs {
		args = append(args, rec.Pool, rec.Scope, rec.Key)
	}
	return "(pool, scope, idem_key) IN (" + strings.Repeat("(?, ?, ?), ", len(recs)-1) + "(?, ?, ?))", args
}

// Get returns the unexpired record of key in pool and scope, and false if
// there is none.
func (r *Records) Get(ctx context.Context, pool, scope, key string) (IdempotencyRecord, bool, error) {
	var row idempotencyRow
	err := r.h.db.GetContext(ctx, &row, "SELECT pool, scope, idem_key, fingerprint, numbers, created_at, expires_at FROM idempotency WHERE pool = ? AND scope = ? AND idem_key = ? AND expires_at > ?",
		pool, scope, key, r.h.now())
	if errors.Is(err, sql.ErrNoRows) {
		return IdempotencyRecord{}, false, nil
	}
	if err != nil {
		return IdempotencyRecord{}, false, r.h.unavailable(err)
	}
	return row.record(), true, nil
}

// Find looks up the unexpired records of the keys of recs (Pool,
// Scope and Key; the other fields are ignored) in one query, and returns for each
// the record found, or a zero record (empty Key) where there is none.
// Distributed mode looks up a batch of requests' keys at once.
func (r *Records) Find(ctx context.Context, recs []IdempotencyRecord) ([]IdempotencyRecord, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	in, args := keysIn(recs)
	var held []idempotencyRow
	if err := r.h.db.SelectContext(ctx, &held, "SELECT pool, scope, idem_key, fingerprint, numbers, created_at, expires_at FROM idempotency WHERE expires_at > ? AND "+in, append([]any{r.h.now()}, args...)...); err != nil {
		return nil, r.h.unavailable(err)
	}
	byKey := byRecordKey(held)
	out := make([]IdempotencyRecord, len(recs))
	for i, rec := range recs {
		out[i] = byKey[rec.key()]
	}
	return out, nil
}

// Put stores rec, replacing an expired record of the same key. It returns
// ErrDuplicate if an unexpired record of the key exists.
func (r *Records) Put(ctx context.Context, rec IdempotencyRecord) error {
	row := rec.row()
	return r.h.inTx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM idempotency WHERE pool = ? AND scope = ? AND idem_key = ? AND expires_at <= ?",
			row.Pool, row.Scope, row.Key, r.h.now()); err != nil {
			return err
		}
		_, err := tx.NamedExecContext(ctx, "INSERT INTO idempotency (pool, scope, idem_key, fingerprint, numbers, created_at, expires_at) VALUES (:pool, :scope, :idem_key, :fingerprint, :numbers, :created_at, :expires_at)", row)
		if r.h.dialect.isDuplicate(err) {
			return ErrDuplicate
		}
		return err
	})
}

// Purge deletes the records that expired before now and reports how many.
func (r *Records) Purge(ctx context.Context) (int64, error) {
	var n int64
	err := r.h.retry(ctx, func() error {
		res, err := r.h.db.ExecContext(ctx, "DELETE FROM idempotency WHERE expires_at <= ?", r.h.now())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, r.h.unavailable(err)
}

// Keep stores the records of recs that have no unexpired record of
// their key yet, in one transaction, and returns for each of recs the record its
// key holds afterwards: its own, or the one stored before it with what may be
// another answer. A Fresh record also takes the place of an abandoned one; a
// record with an empty Answer is an abandoned one. Distributed mode writes a
// batch of allocations' records at once, and abandons the keys of calls whose
// outcome it could not learn with it: the store decides which came first.
func (r *Records) Keep(ctx context.Context, recs []IdempotencyRecord) ([]IdempotencyRecord, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	rows := make([]idempotencyRow, len(recs))
	for i, rec := range recs {
		rows[i] = rec.row()
	}
	in, keys := keysIn(recs)
	var fresh []IdempotencyRecord
	for _, rec := range recs {
		if rec.Fresh && !rec.Abandoned() {
			fresh = append(fresh, rec)
		}
	}
	var held []idempotencyRow
	err := r.h.inTx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM idempotency WHERE expires_at <= ? AND "+in, append([]any{r.h.now()}, keys...)...); err != nil {
			return err
		}
		if len(fresh) > 0 {
			in, keys := keysIn(fresh)
			if _, err := tx.ExecContext(ctx, "DELETE FROM idempotency WHERE numbers = '' AND "+in, keys...); err != nil {
				return err
			}
		}
		if _, err := tx.NamedExecContext(ctx, r.h.dialect.insertIgnore+" INTO idempotency (pool, scope, idem_key, fingerprint, numbers, created_at, expires_at) VALUES (:pool, :scope, :idem_key, :fingerprint, :numbers, :created_at, :expires_at)", rows); err != nil {
			return err
		}
		held = held[:0]
		return tx.SelectContext(ctx, &held, "SELECT pool, scope, idem_key, fingerprint, numbers, created_at, expires_at FROM idempotency WHERE "+in, keys...)
	})
	if err != nil {
		return nil, err
	}
	byKey := byRecordKey(held)
	out := make([]IdempotencyRecord, len(recs))
	for i, rec := range recs {
		h, ok := byKey[rec.key()]
		if !ok {
			return nil, fmt.Errorf("%w: idempotency record of %q vanished while stored", numberd.ErrUnavailable, rec.Key)
		}
		out[i] = h
	}
	return out, nil
}
