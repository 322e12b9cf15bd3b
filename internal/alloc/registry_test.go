package alloc

import (
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

func TestRegistryAddsEachPoolOnce(t *testing.T) {
	var r Registry[*int]
	if _, ok := r.Get("a"); ok {
		t.Fatal("an empty registry found a pool")
	}
	failed := errors.New("store down")
	if _, err := r.GetOrAdd("a", func() (*int, error) { return nil, failed }); !errors.Is(err, failed) {
		t.Fatalf("getOrAdd = %v, want the maker's error", err)
	}
	if _, ok := r.Get("a"); ok {
		t.Fatal("a pool whose maker failed was added")
	}
	var made atomic.Int32
	got := make([]*int, 64)
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() {
			id := strconv.Itoa(i % 4)
			p, err := r.GetOrAdd(id, func() (*int, error) { made.Add(1); n := i % 4; return &n, nil })
			if err != nil {
				t.Error(err)
			}
			got[i] = p
		})
	}
	wg.Wait()
	if made.Load() != 4 {
		t.Errorf("made %d pools for 4 ids", made.Load())
	}
	for i, p := range got {
		if q, ok := r.Get(strconv.Itoa(i % 4)); !ok || q != p || *p != i%4 {
			t.Errorf("caller %d got pool %v, the registry holds %v", i, p, q)
		}
	}
	if n := len(r.All()); n != 4 {
		t.Errorf("all() holds %d pools, want 4", n)
	}
}
