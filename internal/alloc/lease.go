package alloc

import "time"

// Lease is how many numbers a pool reserves ahead of need. It adapts to the pool's
// pace the way Leaf sizes its steps: a Lease used up within half the horizon
// doubles, one that lasted more than twice the horizon halves. A busy pool reserves
// rarely; a quiet one strands little when its reservations are lost.
type Lease struct {
	Size    int64
	resized time.Time
}

func NewLease(o Options) Lease { return Lease{Size: o.LeaseMin, resized: o.Now()} }

// Resize adapts the size at the start of a reservation.
func (l *Lease) Resize(o Options) {
	now := o.Now()
	switch elapsed := now.Sub(l.resized); {
	case elapsed < o.LeaseHorizon/2:
		l.Size = min(l.Size*2, o.LeaseMax)
	case elapsed > o.LeaseHorizon*2:
		l.Size = max(l.Size/2, o.LeaseMin)
	}
	l.resized = now
}
