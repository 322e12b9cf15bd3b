package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations
var migrations embed.FS

// dialect holds what differs between the databases a Store runs on.
type dialect struct {
	name         string
	goose        goose.Dialect
	forUpdate    string // appended to a SELECT that must lock the rows it reads
	insertIgnore string // an INSERT that skips rows whose unique key exists
	isDuplicate  func(error) bool
	// transient reports a failure of a correct statement or transaction that a
	// new attempt is likely not to meet (a deadlock); nil: the database has none.
	transient func(error) bool
	nowMicros string                      // SQL for the database's clock in unix microseconds
	locker    func() (lock.Locker, error) // serialises migrations of several nodes; nil: none needed
}

// Migrate applies the schema migrations that have not been applied yet. Several
// numberd nodes may start at once; with MySQL they take turns through a lock table.
func (s *Store) Migrate(ctx context.Context, logger *slog.Logger) error {
	fsys, err := fs.Sub(migrations, "migrations/"+s.h.dialect.name)
	if err != nil {
		return fmt.Errorf("store: migrations: %w", err)
	}
	opts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}
	if s.h.dialect.locker != nil {
		locker, err := s.h.dialect.locker()
		if err != nil {
			return fmt.Errorf("store: migration lock: %w", err)
		}
		opts = append(opts, goose.WithLocker(locker))
	}
	provider, err := goose.NewProvider(s.h.dialect.goose, s.h.db.DB, fsys, opts...)
	if err != nil {
		return fmt.Errorf("store: migrations: %w", err)
	}
	results, err := provider.Up(ctx)
	if err != nil {
		return s.h.unavailable(fmt.Errorf("migrate: %w", err))
	}
	for _, r := range results {
		logger.Info("schema migration applied", "store", s.h.dialect.name, "version", r.Source.Version, "duration", r.Duration)
	}
	return nil
}
