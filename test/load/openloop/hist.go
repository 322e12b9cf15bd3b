package main

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// subBits sets the histogram's precision: 2^subBits buckets per power of two,
// so a recorded value is off by less than 1/64 (1.6%).
const subBits = 6

// hist is a log-linear latency histogram of nanoseconds, safe for concurrent use
// and constant in size however long the run.
type hist struct {
	counts [64 << subBits]atomic.Uint64
	max    atomic.Int64
}

func bucket(ns int64) int {
	if ns < 1<<subBits {
		return int(max(ns, 0))
	}
	e := bits.Len64(uint64(ns)) // ns has e significant bits, e > subBits
	sub := (uint64(ns) >> (e - 1 - subBits)) & (1<<subBits - 1)
	return (e-subBits)<<subBits + int(sub)
}

// lower is the smallest value that falls into bucket i; upper the largest.
func lower(i int) int64 {
	if i < 1<<subBits {
		return int64(i)
	}
	e := i>>subBits + subBits
	sub := int64(i & (1<<subBits - 1))
	return (1<<subBits | sub) << (e - 1 - subBits)
}

func (h *hist) record(d time.Duration) {
	ns := int64(d)
	h.counts[bucket(ns)].Add(1)
	for {
		m := h.max.Load()
		if ns <= m || h.max.CompareAndSwap(m, ns) {
			return
		}
	}
}

// quantile returns the value at q (0..1): the midpoint of its bucket, or the
// maximum for q = 1.
func (h *hist) quantile(q float64) time.Duration {
	var total uint64
	for i := range h.counts {
		total += h.counts[i].Load()
	}
	if total == 0 {
		return 0
	}
	if q >= 1 {
		return time.Duration(h.max.Load())
	}
	rank := uint64(q*float64(total-1)) + 1
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			lo := lower(i)
			hi := lower(i+1) - 1
			return time.Duration(min((lo+hi)/2, h.max.Load()))
		}
	}
	return time.Duration(h.max.Load())
}
