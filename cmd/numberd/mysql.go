package main

import (
	"errors"
	"time"

	"github.com/go-sql-driver/mysql"
)

// boundedMySQLDSN is dsn with bound (Config.storeTimeout) as the limit of every
// read and write on a connection (readTimeout, writeTimeout) and of a
// connection's dial (timeout, 3 s at most), where dsn sets none. Most store calls
// carry a deadline and the driver ends them at it; these bound a call that
// carries none, so that a MySQL server that hangs (its connections open, nothing
// coming back) holds no request past the request timeout, as OpenMySQL's 10 s
// would.
// A DSN that does not parse is returned as it is, for OpenMySQL to refuse
// without quoting it.
func boundedMySQLDSN(dsn string, bound time.Duration) string {
	if dsn == "" {
		return dsn
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return dsn
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = bound
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = bound
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = min(bound, 3*time.Second)
	}
	return cfg.FormatDSN()
}

// checkMySQLDSN refuses a DSN the driver cannot parse, or one with a negative
// timeout, which would fail every read or write. Its errors never quote the DSN:
// it may hold a password.
func checkMySQLDSN(dsn string) error {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return errors.New("does not parse: want user:password@tcp(host:port)/database[?param=value&…], " +
			"a timeout with a unit, such as readTimeout=9s")
	}
	if cfg.Timeout < 0 || cfg.ReadTimeout < 0 || cfg.WriteTimeout < 0 {
		return errors.New("timeout, readTimeout and writeTimeout must not be negative")
	}
	return nil
}
