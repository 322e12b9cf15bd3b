// Package testenv gives tests the services they run against: the throwaway Redis
// and MariaDB servers that `make test` starts and names in NUMBERD_TEST_REDIS_ADDR and
// NUMBERD_TEST_MYSQL_DSN. A missing variable fails the test: a skipped test proves
// nothing. Tests that start, kill and restart Redis servers of their own do it with
// test/harness, from the binary NUMBERD_TEST_REDIS_SERVER names.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Env names the variable a service's address is read from.
const (
	RedisAddrEnv = "NUMBERD_TEST_REDIS_ADDR"
	MySQLDSNEnv  = "NUMBERD_TEST_MYSQL_DSN"
	// RedisServerEnv names the redis-server binary tests start their own servers from.
	RedisServerEnv = "NUMBERD_TEST_REDIS_SERVER"
)

// Require returns the value of the environment variable name, failing tb if unset.
func Require(tb testing.TB, name string) string {
	tb.Helper()
	v := os.Getenv(name)
	if v == "" {
		tb.Fatalf("%s is not set: run the tests with `make test`, which starts throwaway Redis and MariaDB servers", name)
	}
	return v
}

// RandomName returns prefix followed by random hex, for databases and keys that must
// not collide with another test's.
func RandomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// MySQLDSN creates a fresh database on the test MariaDB server, drops it when tb
// ends, and returns a DSN that names it.
func MySQLDSN(tb testing.TB) string {
	tb.Helper()
	cfg, err := mysql.ParseDSN(Require(tb, MySQLDSNEnv))
	if err != nil {
		tb.Fatalf("%s: %v", MySQLDSNEnv, err)
	}
	name := RandomName("numberd_test_")
	admin := cfg.Clone()
	admin.DBName = ""
	db, err := sql.Open("mysql", admin.FormatDSN())
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		_ = db.Close()
		tb.Fatalf("create test database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP DATABASE "+name); err != nil {
			tb.Errorf("drop test database %s: %v", name, err)
		}
		_ = db.Close()
	})
	cfg.DBName = name
	return cfg.FormatDSN()
}

// RedisAddr returns the test Redis server's host:port.
func RedisAddr(tb testing.TB) string {
	tb.Helper()
	return strings.TrimPrefix(Require(tb, RedisAddrEnv), "redis://")
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Eventually polls cond every 20 ms until it holds or timeout passes.
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal(fmt.Sprintf("%s: not within %v", what, timeout))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
