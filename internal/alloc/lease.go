package alloc

import "time"

// lease is how many numbers a pool reserves ahead of need. It adapts to the pool's
// pace the way Leaf sizes its steps: a lease used up within half the horizon
// doubles, one that lasted more than twice the horizon halves. A busy pool reserves
// rarely; a quiet one strands little when its reservations are lost.
type lease struct {
	size    int64
	resized time.Time
}

func newLease(o Options) lease { return lease{size: o.LeaseMin, resized: o.Now()} }

// resize adapts the size at the start of a reservation.
func (l *lease) resize(o Options) {
	now := o.Now()
	switch elapsed := now.Sub(l.resized); {
	case elapsed < o.LeaseHorizon/2:
		l.size = min(l.size*2, o.LeaseMax)
	case elapsed > o.LeaseHorizon*2:
		l.size = max(l.size/2, o.LeaseMin)
	}
	l.resized = now
}
