package alloc

import "github.com/numberd/numberd"

// PoolView is a pool's segments with their live state: what both engines keep or
// assemble to answer for a pool, and make the API's statuses from.
type PoolView struct {
	Cfg  numberd.Pool
	Segs []*SegmentState // in allocation order, closed ones included
	Head int             // index of the first segment that may still be open
}

// SegmentState is a segment with its live cursor.
type SegmentState struct {
	Meta       numberd.Segment // as loaded; State tracks closes
	Next       int64
	ReservedHi int64
	Recovered  int64 // numbers of this segment in recovery gaps
}

// Open reports whether the segment may still hand out numbers.
func (s *SegmentState) Open() bool {
	return s.Meta.State == numberd.SegmentOpen && s.Next <= s.Meta.Range.Hi
}

// AdvanceHead moves Head past the segments that are closed or used up.
func (v *PoolView) AdvanceHead() {
	for v.Head < len(v.Segs) && !v.Segs[v.Head].Open() {
		v.Head++
	}
}

// Status summarises the pool; the engine holds the lock that guards v.
func (v *PoolView) Status() numberd.PoolStatus {
	st := numberd.PoolStatus{Pool: v.Cfg, Refill: numberd.RefillStatus{State: numberd.RefillIdle, UpdatedAt: v.Cfg.UpdatedAt, EffectiveThreshold: v.Cfg.RefillThreshold}}
	for _, s := range v.Segs {
		st.Issued = AddSat(st.Issued, s.Next-s.Meta.Range.Lo-s.Recovered)
	}
	for i, s := range v.Segs[v.Head:] {
		if !s.Open() {
			continue
		}
		st.Available = AddSat(st.Available, s.Meta.Range.Hi-s.Next+1)
		if i == 0 {
			active := s.Status(true)
			st.Active = &active
		} else {
			st.Queued++
		}
	}
	return st
}

// Status is the segment as the API shows it, active if it is its pool's first open one.
func (s *SegmentState) Status(active bool) numberd.SegmentStatus {
	st := numberd.SegmentStatus{Segment: s.Meta, Next: s.Next, Used: s.Next - s.Meta.Range.Lo - s.Recovered}
	st.ReservedHi, st.Segment.Next = s.ReservedHi, s.Next
	switch {
	case s.Meta.State == numberd.SegmentRetired:
		st.State = numberd.StatusRetired
	case !s.Open():
		st.State = numberd.StatusExhausted
	case active:
		st.State = numberd.StatusActive
	default:
		st.State = numberd.StatusQueued
	}
	return st
}

// Active is the first open segment, or nil.
func (v *PoolView) Active() *SegmentState {
	for _, s := range v.Segs[v.Head:] {
		if s.Open() {
			return s
		}
	}
	return nil
}

// Recovered sums, per segment, the numbers of gaps that recovery skipped: what a
// segment's status does not count as handed out.
func Recovered(gaps []numberd.Gap) map[int64]int64 {
	out := map[int64]int64{}
	for _, g := range gaps {
		if g.Reason == numberd.GapRecovery {
			out[g.SegmentID] += g.Count()
		}
	}
	return out
}

// AddSat adds without overflow: counts of up to 10^18 per segment can exceed an
// int64 when summed over many segments.
func AddSat(a, b int64) int64 {
	if b > 0 && a > (1<<63-1)-b {
		return 1<<63 - 1
	}
	return a + b
}
