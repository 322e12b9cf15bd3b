package store

import (
	"context"
	"time"
)

// Unsettled is a distributed node's work yet to settle, kept in the store when
// Redis, where it is kept otherwise, could not be reached. Entry is opaque to the
// store.
type Unsettled struct {
	Pool  string `db:"pool"`
	ID    string `db:"id"`
	Entry string `db:"entry"`
}

// PutUnsettled keeps u, unless an entry of its id is kept already.
func (s *Store) PutUnsettled(ctx context.Context, u Unsettled) error {
	return s.unavailable(s.retry(ctx, func() error {
		_, err := s.db.ExecContext(ctx, s.dialect.insertIgnore+" INTO unsettled (pool, id, entry, created_at) VALUES (?, ?, ?, "+s.dialect.nowMicros+")", u.Pool, u.ID, u.Entry)
		return err
	}))
}

// DeleteUnsettled forgets the entry id of pool, settled.
func (s *Store) DeleteUnsettled(ctx context.Context, pool, id string) error {
	return s.unavailable(s.retry(ctx, func() error {
		_, err := s.db.ExecContext(ctx, "DELETE FROM unsettled WHERE pool = ? AND id = ?", pool, id)
		return err
	}))
}

// OldUnsettled returns up to limit entries kept longer than age ago by the
// store's clock, oldest first.
func (s *Store) OldUnsettled(ctx context.Context, age time.Duration, limit int) ([]Unsettled, error) {
	var out []Unsettled
	err := s.db.SelectContext(ctx, &out, "SELECT pool, id, entry FROM unsettled WHERE created_at < "+s.dialect.nowMicros+" - ? ORDER BY created_at, pool, id LIMIT ?", age.Microseconds(), limit)
	return out, s.unavailable(err)
}
