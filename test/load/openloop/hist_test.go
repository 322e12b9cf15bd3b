package main

import (
	"testing"
	"time"
)

func TestBucketsAreContiguous(t *testing.T) {
	for i := 0; i < 57<<subBits; i++ { // up to 2^62 ns
		lo := lower(i)
		if got := bucket(lo); got != i {
			t.Fatalf("bucket(lower(%d) = %d) = %d", i, lo, got)
		}
		if got := bucket(lower(i+1) - 1); got != i {
			t.Fatalf("bucket(lower(%d)-1) = %d, want %d", i+1, got, i)
		}
	}
}

func TestQuantile(t *testing.T) {
	var h hist
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0.5, 500 * time.Microsecond},
		{0.99, 990 * time.Microsecond},
		{1, 1000 * time.Microsecond},
	}
	for _, tt := range tests {
		got := h.quantile(tt.q)
		if diff := got - tt.want; diff < -tt.want/50 || diff > tt.want/50 {
			t.Errorf("quantile(%v) = %v, want %v ± 2%%", tt.q, got, tt.want)
		}
	}
}
