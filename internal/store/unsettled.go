package store

import (
	"context"
	"time"
)

// Backlog is the distributed nodes' work yet to settle that they keep in the
// store while Redis, where they keep it otherwise, cannot be reached.
type Backlog struct {
	h *handle
}

// Unsettled is a distributed node's work yet to settle, kept in the store when
// Redis, where it is kept otherwise, could not be reached. Entry is opaque to the
// store.
type Unsettled struct {
	Pool  string `db:"pool"`
	ID    string `db:"id"`
	Entry string `db:"entry"`
}

// Put keeps u, unless an entry of its id is kept already.
func (b *Backlog) Put(ctx context.Context, u Unsettled) error {
	return b.h.unavailable(b.h.retry(ctx, func() error {
		_, err := b.h.db.ExecContext(ctx, b.h.dialect.insertIgnore+" INTO unsettled (pool, id, entry, created_at) VALUES (?, ?, ?, "+b.h.dialect.nowMicros+")", u.Pool, u.ID, u.Entry)
		return err
	}))
}

// Delete forgets the entry id of pool, settled.
func (b *Backlog) Delete(ctx context.Context, pool, id string) error {
	return b.h.unavailable(b.h.retry(ctx, func() error {
		_, err := b.h.db.ExecContext(ctx, "DELETE FROM unsettled WHERE pool = ? AND id = ?", pool, id)
		return err
	}))
}

// Has reports whether an entry id of pool is kept.
func (b *Backlog) Has(ctx context.Context, pool, id string) (bool, error) {
	var n int
	err := b.h.db.GetContext(ctx, &n, "SELECT COUNT(*) FROM unsettled WHERE pool = ? AND id = ?", pool, id)
	return n > 0, b.h.unavailable(err)
}

// Old returns up to limit entries kept longer than age ago by the
// store's clock, oldest first.
func (b *Backlog) Old(ctx context.Context, age time.Duration, limit int) ([]Unsettled, error) {
	var out []Unsettled
	err := b.h.db.SelectContext(ctx, &out, "SELECT pool, id, entry FROM unsettled WHERE created_at < "+b.h.dialect.nowMicros+" - ? ORDER BY created_at, pool, id LIMIT ?", age.Microseconds(), limit)
	return out, b.h.unavailable(err)
}
