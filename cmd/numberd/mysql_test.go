package main

import (
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// TestBoundedMySQLDSN: the store's bound limits the driver's I/O where the DSN
// says nothing, and what the operator wrote, password included, is kept.
func TestBoundedMySQLDSN(t *testing.T) {
	tests := []struct {
		name, dsn                string
		read, write, dial        time.Duration
		user, password, database string
	}{
		{"no timeouts", "app:pw@tcp(db:3306)/numberd", 2 * time.Second, 2 * time.Second, 2 * time.Second, "app", "pw", "numberd"},
		{"own timeouts kept", "app:p@ss@tcp(db:3306)/numberd?readTimeout=30s&writeTimeout=7s&timeout=1s", 30 * time.Second, 7 * time.Second, time.Second, "app", "p@ss", "numberd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := mysql.ParseDSN(boundedMySQLDSN(tt.dsn, 2*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.ReadTimeout != tt.read || cfg.WriteTimeout != tt.write || cfg.Timeout != tt.dial {
				t.Errorf("readTimeout %v, writeTimeout %v, timeout %v; want %v, %v, %v", cfg.ReadTimeout, cfg.WriteTimeout, cfg.Timeout, tt.read, tt.write, tt.dial)
			}
			if cfg.User != tt.user || cfg.Passwd != tt.password || cfg.DBName != tt.database {
				t.Errorf("user %q, password %q, database %q; want %q, %q, %q", cfg.User, cfg.Passwd, cfg.DBName, tt.user, tt.password, tt.database)
			}
		})
	}
	// A long bound leaves the dial at its 3 s.
	cfg, _ := mysql.ParseDSN(boundedMySQLDSN("app@tcp(db:3306)/numberd", time.Minute))
	if cfg.Timeout != 3*time.Second || cfg.ReadTimeout != time.Minute {
		t.Errorf("bound 1m: timeout %v, readTimeout %v; want 3s, 1m", cfg.Timeout, cfg.ReadTimeout)
	}
	if bad := "app:secret@tcp(db:3306"; boundedMySQLDSN(bad, time.Second) != bad {
		t.Errorf("a DSN that does not parse was changed")
	}
}
