package nemesis_test

import (
	"fmt"
	"maps"
	"slices"
)

// maxSamples bounds the examples a verdict keeps of each violation.
const maxSamples = 10

// verdict is what the checker found.
type verdict struct {
	Requests   map[outcome]int
	Unexpected map[string]int // "status code" of answers outside the contract
	Malformed  int
	// Issued counts the distinct numbers handed out; Deliveries the answers
	// that handed them out (a replay that matched its first answer is none).
	Issued     int64
	Deliveries int

	// (a) numbers handed out more than once, counting every time after the first.
	Duplicates int64
	// (b) numbers handed out that lie in no segment loaded into their pool, and
	// segments numberd lists that were never loaded.
	Outside         int64
	UnknownSegments []string
	// (c) numbers below a cursor neither handed out nor in a gap, per pool, and
	// what the calls that broke off asked for, per pool.
	Unaccounted map[string]int64
	InDoubt     map[string]int64
	// Unexplained: unaccounted numbers that no call which broke off could have
	// taken, as none was in flight while they were taken: numbers consumed by
	// calls whose answer said nothing was (Redis paused past the request timeout, its queued scripts run on resume). The sharper
	// form of the check above.
	Unexplained int64
	// AboveCursor: handed out, yet at or above their segment's cursor (numberd
	// would hand them out again); InAbandoned: handed out, yet in a gap whose
	// reason says the caller was handed nothing.
	AboveCursor int64
	InAbandoned int64
	// (d) replays of a key, and those that answered other numbers than its first.
	Replays         int
	ReplaysDiffered int

	// Gaps counts the numbers in gaps by reason; GapOverlap those in two gaps.
	Gaps       map[string]int64
	GapOverlap int64
	// ByKind attributes each violation to the kinds of the faults around it:
	// check → kind → numbers (for replays: keys). See blameWindow, blameLatest
	// and blameStarted for which faults each check blames.
	ByKind map[string]map[kind]int64

	// Set by the test, not the checker: nodes not ready and pools not served
	// after the healing; steps of the nemesis that failed.
	NotReady     []string
	NotRecovered []string
	NemesisErrs  []string

	Samples map[string][]string
}

func (v *verdict) sample(check, format string, args ...any) {
	if len(v.Samples[check]) < maxSamples {
		v.Samples[check] = append(v.Samples[check], fmt.Sprintf(format, args...))
	}
}

func (v *verdict) blame(check string, k kind, n int64) {
	if v.ByKind[check] == nil {
		v.ByKind[check] = map[kind]int64{}
	}
	v.ByKind[check][k] += n
}

// Names of the checks, as the report and ByKind use them.
const (
	checkDuplicates  = "(a) duplicates"
	checkOutside     = "(b) outside a loaded segment"
	checkUnaccounted = "(c) unaccounted"
	checkUnexplained = "(c) unaccounted, no call that broke off in flight"
	checkAbove       = "(c) handed out at or above the cursor"
	checkAbandoned   = "(c) handed out yet in an abandoned gap"
	checkReplays     = "(d) replays that differed"
	checkAnswers     = "answers outside the contract"
)

// failures lists the checks that failed, each with its count.
func (v *verdict) failures() []string {
	var out []string
	add := func(cond bool, format string, args ...any) {
		if cond {
			out = append(out, fmt.Sprintf(format, args...))
		}
	}
	add(v.Duplicates > 0, "%s: %d numbers handed out more than once", checkDuplicates, v.Duplicates)
	add(v.Outside > 0, "%s: %d numbers", checkOutside, v.Outside)
	add(len(v.UnknownSegments) > 0, "%s: segments listed that were never loaded: %v", checkOutside, v.UnknownSegments)
	for _, pool := range slices.Sorted(maps.Keys(v.Unaccounted)) {
		add(v.Unaccounted[pool] > v.InDoubt[pool], "%s: pool %s: %d numbers neither handed out nor in a gap, more than the %d asked for by calls that broke off",
			checkUnaccounted, pool, v.Unaccounted[pool], v.InDoubt[pool])
	}
	add(v.Unexplained > 0, "%s: %d numbers were taken while no call that broke off was in flight to take them", checkUnexplained, v.Unexplained)
	add(v.AboveCursor > 0, "%s: %d numbers", checkAbove, v.AboveCursor)
	add(v.InAbandoned > 0, "%s: %d numbers", checkAbandoned, v.InAbandoned)
	add(v.ReplaysDiffered > 0, "%s: %d of %d replays", checkReplays, v.ReplaysDiffered, v.Replays)
	unexpected := 0
	for _, n := range v.Unexpected {
		unexpected += n
	}
	add(unexpected > 0, "%s: %d (%v)", checkAnswers, unexpected, v.Unexpected)
	add(v.Malformed > 0, "%s: %d malformed 200s", checkAnswers, v.Malformed)
	add(len(v.NotReady) > 0, "nodes not ready after the faults were healed: %v", v.NotReady)
	add(len(v.NotRecovered) > 0, "pools not served after the faults were healed: %v", v.NotRecovered)
	add(len(v.NemesisErrs) > 0, "nemesis steps that failed (the faults were not as planned): %v", v.NemesisErrs)
	return out
}
