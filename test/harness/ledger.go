package harness

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// maxReports bounds the duplicate and order errors a ledger reports one by one.
const maxReports = 20

// Ledger records every number handed out, from any number of goroutines, and fails
// its test on any number handed out twice and on any answer whose numbers are not
// ascending. Numbers of one pool have one width, so comparing them as strings
// compares them as numbers.
type Ledger struct {
	tb testing.TB

	mu      sync.Mutex
	seen    map[string]entry
	answers int
	dups    int
	order   int
}

type entry struct {
	by string
	at time.Time
}

// NewLedger returns an empty ledger that reports to tb.
func NewLedger(tb testing.TB) *Ledger {
	return &Ledger{tb: tb, seen: map[string]entry{}}
}

// Record adds the numbers of one answer, which by handed out. It reports whether
// they were all new and in ascending order.
func (l *Ledger) Record(by string, numbers []string) bool {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.answers++
	ok := true
	for i, n := range numbers {
		if i > 0 && numbers[i-1] >= n {
			ok = false
			l.order++
			if l.order <= maxReports {
				l.tb.Errorf("answer of %s not ascending: %s after %s in %v", by, n, numbers[i-1], numbers)
			}
		}
		if first, dup := l.seen[n]; dup {
			ok = false
			l.dups++
			if l.dups <= maxReports {
				l.tb.Errorf("DUPLICATE: number %s handed out by %s at %s, and again by %s at %s",
					n, first.by, first.at.Format("15:04:05.000"), by, now.Format("15:04:05.000"))
			}
			continue
		}
		l.seen[n] = entry{by: by, at: now}
	}
	return ok
}

// Count is how many distinct numbers were recorded.
func (l *Ledger) Count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.seen)
}

// Answers is how many answers were recorded.
func (l *Ledger) Answers() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.answers
}

// Duplicates is how many numbers were recorded a second time.
func (l *Ledger) Duplicates() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dups
}

// Has reports whether n was recorded.
func (l *Ledger) Has(n string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.seen[n]
	return ok
}

// When returns when n was recorded and by whom.
func (l *Ledger) When(n string) (by string, at time.Time, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.seen[n]
	return e.by, e.at, ok
}

// Numbers returns the recorded numbers in ascending order.
func (l *Ledger) Numbers() []string {
	l.mu.Lock()
	out := make([]string, 0, len(l.seen))
	for n := range l.seen {
		out = append(out, n)
	}
	l.mu.Unlock()
	slices.Sort(out)
	return out
}
