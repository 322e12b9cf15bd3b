package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"syscall"

	"github.com/jmoiron/sqlx"
	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// DatabaseFile and LockFile are the files OpenSQLite keeps in its data directory.
const (
	DatabaseFile = "numberd.db"
	LockFile     = "numberd.lock"
)

var sqliteDialect = dialect{
	name:         "sqlite",
	goose:        goose.DialectSQLite3,
	insertIgnore: "INSERT OR IGNORE",
	// The embedded store's clock is its one node's.
	nowMicros: "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)",
	isDuplicate: func(err error) bool {
		var e *sqlite.Error
		return errors.As(err, &e) && (e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE)
	},
}

// OpenSQLite opens the embedded store in dir, creating the directory and the database
// when missing, and applies the schema migrations. Only one process may use a data
// directory at a time: a second one gets ErrLocked.
func OpenSQLite(ctx context.Context, dir string, logger *slog.Logger) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("store: data directory: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	// synchronous(FULL): a reservation written here is what keeps a number from being
	// issued twice after a power loss, and reservations are rare enough to pay for it.
	q := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(1)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	dsn := "file:" + filepath.Join(dir, DatabaseFile) + "?" + q.Encode()
	db, err := sqlx.Open("sqlite", dsn)
	if err != nil {
		_ = unlock()
		return nil, fmt.Errorf("store: open sqlite: %w", err)
	}
	// One connection: SQLite has one writer anyway, and a single connection keeps
	// transactions from meeting SQLITE_BUSY.
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	s := newStore(db, sqliteDialect, unlock)
	if err := s.Migrate(ctx, logger); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// lockDir takes an exclusive advisory lock on dir's lock file. The kernel drops it
// when the process dies, so a kill -9 never leaves a stale lock behind.
func lockDir(dir string) (func() error, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("store: lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: another numberd process holds %s", ErrLocked, path)
		}
		return nil, fmt.Errorf("store: lock %s: %w", path, err)
	}
	return f.Close, nil
}
