package nemesis_test

import (
	"time"
)

// maxBlameWindow is the longest time between a key's last good answer and its
// first differing replay for which the faults in between are blamed.
const maxBlameWindow = 10 * time.Second

// blameLatest attributes n duplicates, first handed out at lo and again at hi,
// to the latest fault of each lane that started before hi and was in force, or
// ended at most two seconds before, at lo or later: the fault that rolled the
// state back (a failover's replica may have been detached before lo).
func blameLatest(v *verdict, faults []*fault, check string, lo, hi time.Time, n int64) {
	latest := map[string]*fault{}
	for _, f := range faults {
		if f.Started.IsZero() || f.Started.After(hi) || f.Healed.Add(2*time.Second).Before(lo) {
			continue
		}
		if l := latest[f.Lane]; l == nil || f.Started.After(l.Started) {
			latest[f.Lane] = f
		}
	}
	for _, f := range latest {
		v.blame(check, f.Kind, n)
	}
	if len(latest) == 0 {
		v.blame(check, "(no fault)", n)
	}
}

// blameStarted attributes a key whose replay differed to the faults in force, or
// ended at most two seconds before, between its last answer of its first numbers
// and the replay.
func blameStarted(v *verdict, faults []*fault, check string, lo, hi time.Time) {
	// A key replayed long after its last good answer could have lost its
	// record to any of many faults: it is counted, not blamed.
	if hi.Sub(lo) > maxBlameWindow {
		v.blame(check, kind("(window over "+maxBlameWindow.String()+")"), 1)
		return
	}
	found := false
	for _, f := range faults {
		if !f.Started.IsZero() && !f.Started.After(hi) && !f.Healed.Add(2*time.Second).Before(lo) {
			v.blame(check, f.Kind, 1)
			found = true
		}
	}
	if !found {
		v.blame(check, "(no fault)", 1)
	}
}
