package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/numberd/numberd/internal/testenv"
	"github.com/numberd/numberd/test/harness"
)

// recorder keeps every number of every 200 answer, in answer order per worker.
type recorder struct {
	mu   sync.Mutex
	nums []string
}

func (r *recorder) add(nums []string) {
	r.mu.Lock()
	r.nums = append(r.nums, nums...)
	r.mu.Unlock()
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.nums)
}

// load is a set of workers that allocate 1..3 numbers at a time from one pool,
// recording every number of every 200 answer.
type load struct {
	rec     recorder
	errs    errorList
	ok      atomic.Int64 // 200 answers
	dying   atomic.Bool  // the server is being stopped: failures end a worker quietly
	quit    chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup
}

// startLoad starts workers against pool. A worker ends when the server stops
// answering after expectDeath, or at stop. Answers other than 200 are errors, but
// after expectDeath a 503 unavailable (refused, nothing consumed) ends a worker
// quietly too.
func startLoad(s *Server, token, pool string, workers int) *load {
	l := &load{quit: make(chan struct{})}
	for i := range workers {
		l.wg.Go(func() {
			count := i%3 + 1
			for {
				select {
				case <-l.quit:
					return
				default:
				}
				r, err := s.Send(Req{Method: "POST", Path: "/v1/pools/" + pool + "/numbers", Token: token,
					Body: map[string]any{"count": count}})
				switch {
				case err != nil:
					if !l.dying.Load() {
						l.errs.add("worker %d: %v while the server runs", i, err)
					}
					return
				case r.Status == http.StatusOK:
					nums, good := r.Strs("numbers")
					if !good || len(nums) != count {
						l.errs.add("%s: got %d numbers, want %d", r, len(nums), count)
						return
					}
					l.rec.add(nums)
					l.ok.Add(1)
				case l.dying.Load() && checkProblem(r, http.StatusServiceUnavailable, "unavailable") == "":
					return
				default:
					l.errs.add("%s: unexpected answer under load", r)
					return
				}
			}
		})
	}
	return l
}

// expectDeath tells the workers that the server is about to stop.
func (l *load) expectDeath() { l.dying.Store(true) }

// wait stops the workers, waits for them and fails t on any error they met.
func (l *load) wait(t *testing.T) []string {
	t.Helper()
	l.stopped.Do(func() { close(l.quit) })
	l.wg.Wait()
	l.errs.check(t)
	return l.rec.all()
}

// drain allocates the rest of pool, in batches that shrink as the pool runs dry,
// until a single number is refused with pool_exhausted.
func drain(t *testing.T, s *Server, token, pool string) []string {
	t.Helper()
	var out []string
	for count := 1000; count >= 1; {
		r := s.do(t, "POST", "/v1/pools/"+pool+"/numbers", token, map[string]any{"count": count})
		if r.Status == http.StatusOK {
			nums, ok := r.Strs("numbers")
			if !ok || len(nums) != count {
				t.Fatalf("%s: got %d numbers, want %d", r, len(nums), count)
			}
			out = append(out, nums...)
			continue
		}
		wantProblem(t, r, http.StatusServiceUnavailable, "pool_exhausted")
		count /= 2
	}
	return out
}

// TestKill9UnderLoad kills numberd with SIGKILL while it hands out numbers,
// restarts it on the same data directory, does that once more, and drains the pool:
// no number comes out twice; each crash leaves a recovery gap, and no number of a
// gap recorded at a restart is handed out after it; every number of the segment is
// available, issued or in a gap.
func TestKill9UnderLoad(t *testing.T) {
	t.Parallel()
	cfg := &harness.FileConfig{Tokens: []harness.TokenConfig{{Token: adminToken, Role: "admin"}}}
	const (
		pool    = "crash"
		size    = 20000
		workers = 8
		kills   = 2
	)
	first, last := n20(1), n20(size)

	s := startServer(t, Options{Config: cfg})
	s.createPool(t, adminToken, pool, 20)
	s.loadSegment(t, adminToken, pool, first, last)
	// An idempotent allocation before the load: its answer must survive the kills.
	keyed := numbersOf(t, allocIdem(t, s, adminToken, pool, "before-kill", map[string]any{"count": 3}), 3)

	// lives[i] holds the numbers answered by the i-th process; gapsAt[i] the gaps
	// listed when the i-th process started (gapsAt[0] empty).
	lives := [][]string{keyed}
	gapsAt := [][]map[string]any{nil}
	for kill := range kills {
		l := startLoad(s, adminToken, pool, workers)
		testenv.Eventually(t, 30*time.Second, "400 answers under load", func() bool { return l.ok.Load() >= 400 })
		l.expectDeath()
		s.Kill9()
		lives[kill] = append(lives[kill], l.wait(t)...)

		s.Restart()
		gapsAt = append(gapsAt, s.gaps(t, adminToken, pool))
		r := allocIdem(t, s, adminToken, pool, "before-kill", map[string]any{"count": 3})
		if got := numbersOf(t, r, 3); !slices.Equal(got, keyed) || !replayed(r) {
			t.Errorf("idempotency key after SIGKILL %d and a restart: got %v replayed=%v, want %v replayed", kill+1, got, replayed(r), keyed)
		}
		lives = append(lives, nil)
	}
	lives[kills] = drain(t, s, adminToken, pool)
	wantProblem(t, s.do(t, "POST", "/v1/pools/"+pool+"/numbers", adminToken, nil), http.StatusServiceUnavailable, "pool_exhausted")
	gaps := s.gaps(t, adminToken, pool)
	if len(gaps) != len(gapsAt[kills]) {
		t.Errorf("gaps changed while draining: before %v, after %v", gapsAt[kills], gaps)
	}

	// No number twice, every one of the segment.
	var bad []string
	seen := map[string]int{} // number → life that answered it
	for life, nums := range lives {
		for _, n := range nums {
			if !isDigits(n, 20) || !inRange(n, first, last) {
				bad = append(bad, fmt.Sprintf("number %q is not in %s..%s", n, first, last))
			}
			if prev, dup := seen[n]; dup {
				bad = append(bad, fmt.Sprintf("number %s answered twice (by process %d and process %d)", n, prev, life))
			}
			seen[n] = life
		}
	}
	reportFirst(t, bad)

	// Gaps: well formed, all recovery, one at least per kill, none of their numbers
	// handed out by a process started after they were recorded.
	inGap := func(n string, gaps []map[string]any) bool {
		return slices.ContainsFunc(gaps, func(g map[string]any) bool { return inRange(n, str(g, "start"), str(g, "end")) })
	}
	var gapTotal int64
	for _, g := range gaps {
		start, end := str(g, "start"), str(g, "end")
		count := decimal(t, "gap count", str(g, "count"))
		if !isDigits(start, 20) || !isDigits(end, 20) || !inRange(start, first, last) || !inRange(end, start, last) {
			t.Fatalf("gap %v is not a range of %s..%s", g, first, last)
		}
		if want := numDiff(end, start) + 1; count != want {
			t.Errorf("gap %v: count %d, want %d", g, count, want)
		}
		if reason := str(g, "reason"); reason != "recovery" {
			t.Errorf("gap %v: reason %q, want recovery (nothing expired or was retired)", g, reason)
		}
		gapTotal += count
	}
	for kill := 1; kill <= kills; kill++ {
		if len(gapsAt[kill]) < kill {
			t.Errorf("after SIGKILL %d: gaps %v, want a recovery gap per kill so far", kill, gapsAt[kill])
		}
		var reissued []string
		for life := kill; life <= kills; life++ {
			for _, n := range lives[life] {
				if inGap(n, gapsAt[kill]) {
					reissued = append(reissued, fmt.Sprintf("number %s, in a gap recorded at restart %d, was handed out by process %d", n, kill, life))
				}
			}
		}
		reportFirst(t, reissued)
	}
	for life, nums := range lives {
		t.Logf("process %d answered %d numbers", life, len(nums))
	}
	t.Logf("gaps: %v", gaps)

	// Every number is issued, available or in a gap.
	st := s.poolStatus(t, adminToken, pool)
	avail := decimal(t, "available", st.Str("available"))
	issued := decimal(t, "issued", st.Str("issued"))
	if avail != 0 {
		t.Errorf("%s: available %d after draining, want 0", st, avail)
	}
	if got := avail + issued + gapTotal; got != size {
		t.Errorf("available %d + issued %d + gaps %d = %d, want the segment's %d", avail, issued, gapTotal, got, size)
	}
	// Issued counts every answered number outside the gaps, and at most the few that
	// requests in flight at a kill took without their answers arriving.
	var known int64
	for n := range seen {
		if !inGap(n, gaps) {
			known++
		}
	}
	if slack := int64(kills * workers * 3); issued < known || issued > known+slack {
		t.Errorf("issued %d, want %d (answered numbers outside the gaps) plus at most %d in flight at the kills", issued, known, slack)
	}
}

// TestSigtermCleanRestart: SIGTERM exits 0, even under load, and a restart on the
// same data directory continues right after the last number handed out, with no gap.
func TestSigtermCleanRestart(t *testing.T) {
	t.Parallel()
	const pool = "clean"
	first, last := n20(1), n20(100000)

	s := startServer(t, Options{Config: &harness.FileConfig{Tokens: []harness.TokenConfig{{Token: adminToken, Role: "admin"}}}})
	s.createPool(t, adminToken, pool, 20)
	s.loadSegment(t, adminToken, pool, first, last)
	var issued []string
	for _, c := range []int{1, 5, 31} {
		issued = append(issued, s.allocate(t, adminToken, pool, c)...)
	}
	keyed := numbersOf(t, allocIdem(t, s, adminToken, pool, "before-stop", map[string]any{"count": 2}), 2)
	issued = append(issued, keyed...)
	if want := numSpan(first, numAdd(first, 38)); !slices.Equal(issued, want) {
		t.Fatalf("got %v, want %s..%s", issued, want[0], want[38])
	}
	if code := s.Stop(); code != 0 {
		t.Fatalf("exit status after SIGTERM: %d, want 0", code)
	}

	// Quiet restart.
	s.Restart()
	if got, want := s.allocate(t, adminToken, pool, 1), []string{numAdd(first, 39)}; !slices.Equal(got, want) {
		t.Fatalf("first number after a clean restart: got %v, want %v", got, want)
	}
	if gaps := s.gaps(t, adminToken, pool); len(gaps) != 0 {
		t.Errorf("gaps after a clean restart: %v, want none", gaps)
	}
	r := allocIdem(t, s, adminToken, pool, "before-stop", map[string]any{"count": 2})
	if got := numbersOf(t, r, 2); !slices.Equal(got, keyed) || !replayed(r) {
		t.Errorf("idempotency key after a restart: got %v replayed=%v, want %v replayed", got, replayed(r), keyed)
	}
	s.wantCounts(t, adminToken, pool, "99960", "40")

	// SIGTERM under load: in-flight requests are answered, nothing is lost.
	l := startLoad(s, adminToken, pool, 4)
	testenv.Eventually(t, 30*time.Second, "200 answers under load", func() bool { return l.ok.Load() >= 200 })
	l.expectDeath()
	code := s.Stop()
	nums := l.wait(t)
	if code != 0 {
		t.Fatalf("exit status after SIGTERM under load: %d, want 0", code)
	}
	slices.SortFunc(nums, numCmp)
	if want := numSpan(numAdd(first, 40), numAdd(first, 40+int64(len(nums))-1)); !slices.Equal(nums, want) {
		t.Fatalf("the %d numbers answered under load are not %s..%s without holes or repeats", len(nums), want[0], want[len(want)-1])
	}
	next := numAdd(first, 40+int64(len(nums)))

	s.Restart()
	if got := s.allocate(t, adminToken, pool, 2); !slices.Equal(got, []string{next, numAdd(next, 1)}) {
		t.Errorf("after SIGTERM under load and a restart: got %v, want %s and the one after (the last answered was %s)", got, next, nums[len(nums)-1])
	}
	if gaps := s.gaps(t, adminToken, pool); len(gaps) != 0 {
		t.Errorf("gaps after SIGTERM under load: %v, want none", gaps)
	}
	total := int64(40 + len(nums) + 2)
	s.wantCounts(t, adminToken, pool, strconv.FormatInt(100000-total, 10), strconv.FormatInt(total, 10))
	if code := s.Stop(); code != 0 {
		t.Errorf("exit status after the last SIGTERM: %d, want 0", code)
	}
}
