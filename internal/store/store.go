// Package store keeps numberd's durable state: pools, segments with their durable
// high-water mark, gaps, idempotency records and refill jobs. One Store serves two
// databases through database/sql: an embedded SQLite file (OpenSQLite) and a shared
// MySQL-compatible server (OpenMySQL). Their few differences live in dialect. Store
// keeps the pools and their segments; the other jobs have a type each (Generations,
// Gaps, Records, Backlog, Refills), reached through Store's accessors and sharing
// its database.
//
// Every method takes a context first. Errors the caller acts on are the sentinels
// below, tested with errors.Is; any failure of the database itself is reported as
// ErrUnavailable, whose text never carries a DSN.
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
	// ErrConflict means a compare-and-set lost: the row is not in the state the caller
	// last read, because another writer moved it.
	ErrConflict = errors.New("store: concurrent update")
	// ErrDuplicate means a record with the same key exists already.
	ErrDuplicate = errors.New("store: duplicate")
	// ErrLocked means another process holds the embedded data directory.
	ErrLocked = errors.New("store: data directory in use")
)

// Store is numberd's durable state in one database. Its own methods keep the pools
// and their segments; the rest of the state is reached through accessors, each
// returning the type that does one job on the same database: Generations (the
// generation-checked writes of distributed mode), Gaps, Records (idempotency),
// Backlog (unsettled work) and Refills (the refill lock and jobs).
type Store struct {
	h       *handle
	release func() error // undoes what Open took besides the database, such as a file lock

	gens    *Generations
	gaps    *Gaps
	records *Records
	backlog *Backlog
	refills *Refills

	// Now is the clock for the informational timestamps the store writes.
	Now func() time.Time
}

// handle is what the store's types share: the database, its dialect and the clock.
type handle struct {
	db      *sqlx.DB
	dialect dialect
	clock   func() time.Time
}

// newStore makes the Store of db, whose types all share one handle.
func newStore(db *sqlx.DB, d dialect, release func() error) *Store {
	s := &Store{release: release, Now: time.Now}
	s.h = &handle{db: db, dialect: d, clock: func() time.Time { return s.Now() }}
	s.gaps = &Gaps{h: s.h}
	s.gens = &Generations{h: s.h, segs: s, gaps: s.gaps}
	s.records = &Records{h: s.h}
	s.backlog = &Backlog{h: s.h}
	s.refills = &Refills{h: s.h, segs: s}
	return s
}

// Generations returns the writes of distributed mode that hold only while a
// pool's Redis state is at the generation they carry.
func (s *Store) Generations() *Generations { return s.gens }

// Gaps returns the numbers known never to be handed out.
func (s *Store) Gaps() *Gaps { return s.gaps }

// Records returns the idempotency records.
func (s *Store) Records() *Records { return s.records }

// Backlog returns the unsettled work distributed nodes keep here.
func (s *Store) Backlog() *Backlog { return s.backlog }

// Refills returns the refill lock and the download jobs.
func (s *Store) Refills() *Refills { return s.refills }

// Close closes the database and releases what Open took.
func (s *Store) Close() error {
	err := s.h.db.Close()
	if s.release != nil {
		err = errors.Join(err, s.release())
	}
	return err
}

// Name is the database's kind, "sqlite" or "mysql", for logs and readiness answers.
func (s *Store) Name() string { return s.h.dialect.name }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.h.db.PingContext(ctx); err != nil {
		return s.h.unavailable(err)
	}
	return nil
}

// unavailable wraps a database failure in ErrUnavailable. Errors that already carry
// a sentinel of this package, and context errors, pass through unchanged.
func (h *handle) unavailable(err error) error {
	switch {
	case err == nil:
		return nil
	case isOurs(err), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return fmt.Errorf("%w: %s: %v", numberd.ErrUnavailable, h.dialect.name, err)
}

func isOurs(err error) bool {
	for _, sentinel := range []error{numberd.ErrPoolNotFound, numberd.ErrSegmentNotFound, numberd.ErrOverlap, numberd.ErrInvalid, ErrConflict, ErrDuplicate, numberd.ErrUnavailable, ErrLocked, ErrHeld, ErrFenced} {
		if errors.Is(err, sentinel) {
			return true
		}
	}
	return false
}

// inTx runs fn in a transaction and commits it when fn returns nil. The transaction
// takes the write lock at its start (SQLite's BEGIN IMMEDIATE; rows read FOR UPDATE
// in MySQL), so read-check-write sequences inside fn are serialised. A transaction
// that fails transiently (a deadlock) is rolled back and run again (see retry), so
// fn may run more than once: it must set what it reports afresh on each run.
func (h *handle) inTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	return h.unavailable(h.retry(ctx, func() error {
		tx, err := h.db.BeginTxx(ctx, nil)
		if err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			_ = tx.Rollback()
			return err
		}
		return tx.Commit()
	}))
}

func (h *handle) now() int64 { return h.clock().UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func nullMicros(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

func fromNullMicros(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return fromMicros(n.Int64)
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }
