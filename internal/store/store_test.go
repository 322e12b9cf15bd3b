package store_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/internal/store"
	"github.com/numberd/numberd/internal/testenv"
)

func TestClosedStoreIsUnavailable(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			s := b.open(t)
			must(t, s.Ping(context.Background()))
			_ = s.Close()
			if err := s.Ping(context.Background()); !errors.Is(err, numberd.ErrUnavailable) {
				t.Errorf("Ping on a closed store: err = %v, want ErrUnavailable", err)
			}
			if _, err := s.Pools(context.Background()); !errors.Is(err, numberd.ErrUnavailable) {
				t.Errorf("Pools on a closed store: err = %v, want ErrUnavailable", err)
			}
		})
	}
}

func TestSQLiteDataDirectoryHasOneWriter(t *testing.T) {
	dir := t.TempDir()
	s, err := store.OpenSQLite(context.Background(), dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.OpenSQLite(context.Background(), dir, quiet); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second open: err = %v, want ErrLocked", err)
	}
	mustPool(t, s, "p", 4)
	must(t, s.Close())
	s, err = store.OpenSQLite(context.Background(), dir, quiet)
	if err != nil {
		t.Fatalf("reopen after close: %v", err)
	}
	defer s.Close()
	if _, err := s.Pool(context.Background(), "p"); err != nil {
		t.Errorf("pool lost across reopen: %v", err)
	}
}

func TestMySQLNodesMigrateTogether(t *testing.T) {
	dsn := testenv.MySQLDSN(t)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			s, err := store.OpenMySQL(context.Background(), dsn, quiet)
			if err != nil {
				t.Error(err)
				return
			}
			mustPool(t, s, "p", 4)
			_ = s.Close()
		})
	}
	wg.Wait()
}

func TestOpenMySQLRejectsBadDSNWithoutEchoingIt(t *testing.T) {
	for _, dsn := range []string{"root:s3cret@tcp(127.0.0.1:1", "root:s3cret@tcp(127.0.0.1:3306)/"} {
		_, err := store.OpenMySQL(context.Background(), dsn, quiet)
		if !errors.Is(err, numberd.ErrInvalid) {
			t.Errorf("OpenMySQL(bad dsn) err = %v, want ErrInvalid", err)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error %q shows the password", err)
		}
	}
}
