package nemesis_test

import (
	"fmt"
	"strconv"
)

// digits is the width of every number: the e-invoice's 20.
const digits = 20

// iv is the closed interval lo..hi of number suffixes.
type iv struct{ Lo, Hi int64 }

func (v iv) size() int64 { return v.Hi - v.Lo + 1 }

// poolSpec is a pool of the test: every number is prefix followed by a suffix of
// digits-len(prefix) digits, so numbers of one pool compare as their suffixes.
type poolSpec struct {
	name   string
	prefix string
	// segments are loaded in this order: each a range of suffixes.
	segments []iv
}

// testPools are the pools the clients draw from. The first segments are small, so
// that pools move to their next segment during a run (a batch may span two); the
// last are too large to run out in any run.
var testPools = []poolSpec{
	{"nem-a", "24442", []iv{{1, 5_000}, {10_001, 40_000}, {1_000_001, 900_000_000_000}}},
	{"nem-b", "25110", []iv{{1, 12_000}, {20_001, 20_500}, {50_001, 900_000_000_000}}},
	{"nem-c", "31000", []iv{{100_001, 130_000}, {200_001, 900_000_000_000}}},
}

func poolByName(name string) *poolSpec {
	for i := range testPools {
		if testPools[i].name == name {
			return &testPools[i]
		}
	}
	return nil
}

// number formats suffix v as a number of the pool.
func (p *poolSpec) number(v int64) string {
	return fmt.Sprintf("%s%0*d", p.prefix, digits-len(p.prefix), v)
}

// suffix parses a number of the pool; ok is false for one of another width or
// prefix.
func (p *poolSpec) suffix(n string) (int64, bool) {
	if len(n) != digits || n[:len(p.prefix)] != p.prefix {
		return 0, false
	}
	v, err := strconv.ParseInt(n[len(p.prefix):], 10, 64)
	if err != nil || v < 0 {
		return 0, false
	}
	return v, true
}

// runs turns the numbers of one answer into runs of consecutive suffixes. bad
// lists those that are not numbers of the pool; ascending is false if the
// numbers are not strictly ascending, as an answer's must be.
func (p *poolSpec) runs(numbers []string) (out []iv, bad []string, ascending bool) {
	ascending = true
	prev := int64(-1)
	for _, n := range numbers {
		v, ok := p.suffix(n)
		if !ok {
			bad = append(bad, n)
			continue
		}
		if v <= prev {
			ascending = false
		}
		prev = v
		if k := len(out) - 1; k >= 0 && out[k].Hi+1 == v {
			out[k].Hi = v
		} else {
			out = append(out, iv{v, v})
		}
	}
	return out, bad, ascending
}

// format lists the numbers of runs.
func (p *poolSpec) format(runs []iv) []string {
	var out []string
	for _, r := range runs {
		for v := r.Lo; v <= r.Hi; v++ {
			out = append(out, p.number(v))
		}
	}
	return out
}
