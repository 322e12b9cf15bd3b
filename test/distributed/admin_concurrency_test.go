package distributed_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/numberd/numberd/test/harness"
)

// TestConcurrentAdmin creates pools and loads segments 16 at a time on each of
// two nodes sharing one MySQL database: both nodes create every pool, each loads
// a segment of its own and one that both load. InnoDB answers such concurrent
// inserts into one index now and then with a deadlock (1213) or a lock wait
// timeout (1205), which the store must retry: every call is correct, so every
// answer must be 200 or 201, never a 5xx.
func TestConcurrentAdmin(t *testing.T) {
	rds := harness.StartRedis(t, "redis")
	nodes := startNodes(t, 2, "redis://"+rds.Addr()+"/0", mysqlDSN(t))
	const workers, poolsEach = 16, 4
	c := harness.NewClient(2 * workers)
	defer c.Close()

	type answer struct {
		what   string
		status int
		text   string
	}
	var (
		mu      sync.Mutex
		answers []answer
	)
	note := func(what string, r *harness.Response, err error) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r != nil:
			answers = append(answers, answer{what, r.Status, r.String()})
		default:
			answers = append(answers, answer{what, 0, err.Error()})
		}
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for n, node := range nodes {
		for w := range workers {
			wg.Go(func() {
				for i := range poolsEach {
					pool := fmt.Sprintf("adm-%02d-%d", w, i)
					r, err := c.PutPool(ctx, node.URL(), pool, digits)
					note("PUT "+pool+" on "+node.Name(), r, err)
					if err != nil {
						continue // its loads would only fail with pool_not_found
					}
					own := span{fmt.Sprintf("2444%d", n+1), 1, 1000}
					shared := span{"24449", 1, 1000}
					for _, s := range []span{own, shared} {
						r, err := c.LoadSegment(ctx, node.URL(), pool, s.start(), s.end())
						note(fmt.Sprintf("load %s..%s into %s on %s", s.start(), s.end(), pool, node.Name()), r, err)
					}
				}
			})
		}
	}
	wg.Wait()

	var failed int
	for _, a := range answers {
		if a.status != http.StatusOK && a.status != http.StatusCreated {
			failed++
			if failed <= 20 {
				t.Errorf("%s: %s", a.what, a.text)
			}
		}
	}
	if want := len(nodes) * workers * poolsEach * 3; len(answers) != want {
		t.Errorf("%d answers, want %d", len(answers), want)
	}
	if failed > 0 {
		t.Fatalf("%d of %d admin calls failed", failed, len(answers))
	}
	// Every pool holds the three segments, the shared one once.
	for w := range workers {
		for i := range poolsEach {
			pool := fmt.Sprintf("adm-%02d-%d", w, i)
			r, err := c.Do(ctx, http.MethodGet, nodes[0].URL()+"/v1/pools/"+pool+"/segments", nil)
			if err != nil {
				t.Fatal(err)
			}
			segs, _ := r.JSON["segments"].([]any)
			if r.Status != http.StatusOK || len(segs) != 3 {
				t.Errorf("GET segments of %s: %s, want 200 with 3 segments", pool, r)
			}
		}
	}
}
