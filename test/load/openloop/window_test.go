package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseCPUTimes(t *testing.T) {
	stat := "cpu  100 5 50 800 20 1 4 20 7 0\ncpu0 50 2 25 400 10 0 2 10 3 0\n"
	got := parseCPUTimes(stat)
	// Guest time (7) is part of user time already and must not count twice.
	want := cpuTimes{total: 100 + 5 + 50 + 800 + 20 + 1 + 4 + 20, idle: 800 + 20, steal: 20}
	if got != want {
		t.Fatalf("parseCPUTimes = %+v, want %+v", got, want)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8\n", "cpu 1 2 x 4 5 6 7 8\n", "cpu 1 2 3\n"} {
		if got := parseCPUTimes(bad); got != (cpuTimes{}) {
			t.Errorf("parseCPUTimes(%q) = %+v, want zero", bad, got)
		}
	}
}

func TestCloseWindow(t *testing.T) {
	h := new(hist)
	for i := 1; i <= 100; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	w := closeWindow(h, cpuTimes{total: 1000, idle: 500, steal: 10}, cpuTimes{total: 1200, idle: 550, steal: 50})
	if w.answers != 100 {
		t.Errorf("answers = %d, want 100", w.answers)
	}
	if w.p99 < 97*time.Millisecond || w.p99 > 101*time.Millisecond {
		t.Errorf("p99 = %v, want about 99ms", w.p99)
	}
	if w.max != 100*time.Millisecond {
		t.Errorf("max = %v, want 100ms", w.max)
	}
	if w.steal != 0.2 || w.idle != 0.25 {
		t.Errorf("steal, idle = %v, %v; want 0.2, 0.25", w.steal, w.idle)
	}
	// No CPU times (no /proc/stat): unknown, not zero.
	if w := closeWindow(h, cpuTimes{}, cpuTimes{}); w.steal != -1 || w.idle != -1 {
		t.Errorf("without CPU times: steal, idle = %v, %v; want -1, -1", w.steal, w.idle)
	}
}

func TestWindowSummaryNamesTheWorstWindow(t *testing.T) {
	samples := []sample{
		{}, // the first sample has no window
		{win: &windowStats{answers: 10, p99: 3 * time.Millisecond, steal: 0.01}},
		{win: &windowStats{answers: 10, p99: 90 * time.Millisecond, steal: 0.30, idle: 0.05}},
		{win: &windowStats{answers: 10, p99: 4 * time.Millisecond, steal: 0.02}},
		{win: &windowStats{answers: 0, p99: 0}}, // an empty window is left out
	}
	got := strings.Join(windowSummary(samples), " ")
	for _, want := range []string{"windows=3", "window_p99_median_us=4000.0", "window_p99_max_us=90000.0", "worst_window_steal_pct=30.0", "worst_window_idle_pct=5.0"} {
		if !strings.Contains(got, want) {
			t.Errorf("windowSummary = %q, missing %q", got, want)
		}
	}
	if got := windowSummary([]sample{{}}); got != nil {
		t.Errorf("no windows: %q, want nothing", got)
	}
}
