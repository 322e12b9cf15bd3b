package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/numberd/numberd"
)

var mysqlDialect = dialect{
	name:         "mysql",
	goose:        goose.DialectMySQL,
	forUpdate:    " FOR UPDATE",
	insertIgnore: "INSERT IGNORE",
	nowMicros:    "CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)",
	isDuplicate: func(err error) bool {
		var e *mysql.MySQLError
		return errors.As(err, &e) && e.Number == 1062 // ER_DUP_ENTRY
	},
	// InnoDB ends a transaction caught in a deadlock (ER_LOCK_DEADLOCK) or one
	// that waited too long for a row lock (ER_LOCK_WAIT_TIMEOUT) while another
	// transaction held it; concurrent inserts into one index meet the first now
	// and then (gap locks). The caller did nothing wrong: the work is done again.
	transient: func(err error) bool {
		var e *mysql.MySQLError
		return errors.As(err, &e) && (e.Number == 1213 || e.Number == 1205)
	},
	locker: func() (lock.Locker, error) {
		return lock.NewMySQLTableLocker(
			lock.WithTableName("numberd_migration_lock"),
			lock.WithTableLockTimeout(250*time.Millisecond, 480),
		)
	},
}

// OpenMySQL connects to a MySQL-compatible server with a go-sql-driver DSN and applies
// the schema migrations. The DSN's database must exist.
//
// The DSN is amended so compare-and-set updates count matched rows, not changed
// ones (clientFoundRows), and so a dead server is noticed within the request's
// deadline rather than the operating system's.
func OpenMySQL(ctx context.Context, dsn string, logger *slog.Logger) (*Store, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		// The parser's message quotes the DSN, which may hold a password.
		return nil, fmt.Errorf("%w: the MySQL DSN does not parse (want user:password@tcp(host:port)/database)", numberd.ErrInvalid)
	}
	if cfg.DBName == "" {
		return nil, fmt.Errorf("%w: the MySQL DSN names no database (…/numberd)", numberd.ErrInvalid)
	}
	cfg.ClientFoundRows = true
	cfg.ParseTime = true // the migration lock table reads DATETIMEs
	if cfg.Timeout == 0 {
		cfg.Timeout = 3 * time.Second
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = 10 * time.Second
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: the MySQL DSN is not usable", numberd.ErrInvalid)
	}
	db := sqlx.NewDb(sql.OpenDB(connector), "mysql")
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(16)
	db.SetConnMaxLifetime(5 * time.Minute)
	s := newStore(db, mysqlDialect, nil)
	if err := s.Migrate(ctx, logger); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}
