package distributed

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/numberd/numberd"
)

// offsetRun is numbers of a segment by offset from its first: from..to.
type offsetRun struct {
	seg      int64
	from, to int64
}

// usedTokens splits the U:<id>:<used> tokens, which come last, off an allocate
// answer's trailing tokens.
func usedTokens(tokens []string) (rest []string, used map[int64]int64, err error) {
	rest = tokens
	for len(rest) > 0 && strings.HasPrefix(rest[len(rest)-1], "U:") {
		id, n, ok := parseEvent(rest[len(rest)-1], "U:")
		if !ok {
			return nil, nil, fmt.Errorf("%w: malformed used count %q in allocate answer", numberd.ErrRedisUnavailable, rest[len(rest)-1])
		}
		if used == nil {
			used = map[int64]int64{}
		}
		used[id] = n
		rest = rest[:len(rest)-1]
	}
	return rest, used, nil
}

// parseRuns parses "<id>:<from>-<to>,…", or "-" for none.
func parseRuns(text string) ([]offsetRun, error) {
	if text == "-" {
		return nil, nil
	}
	var out []offsetRun
	for part := range strings.SplitSeq(text, ",") {
		ids, bounds, ok1 := strings.Cut(part, ":")
		from, to, ok2 := strings.Cut(bounds, "-")
		id, err1 := strconv.ParseInt(ids, 10, 64)
		lo, err2 := strconv.ParseInt(from, 10, 64)
		hi, err3 := strconv.ParseInt(to, 10, 64)
		if !ok1 || !ok2 || err1 != nil || err2 != nil || err3 != nil || lo > hi {
			return nil, fmt.Errorf("%w: malformed runs %q", numberd.ErrRedisUnavailable, text)
		}
		out = append(out, offsetRun{seg: id, from: lo, to: hi})
	}
	return out, nil
}

// take cuts the first count numbers off runs.
func take(runs []offsetRun, count int64) (got, rest []offsetRun, err error) {
	for count > 0 {
		if len(runs) == 0 {
			return nil, nil, fmt.Errorf("%w: allocate answer holds fewer numbers than it allocated", numberd.ErrRedisUnavailable)
		}
		r := runs[0]
		n := min(count, r.to-r.from+1)
		got = append(got, offsetRun{seg: r.seg, from: r.from, to: r.from + n - 1})
		count -= n
		if r.from+n > r.to {
			runs = runs[1:]
		} else {
			runs[0].from += n
		}
	}
	return got, runs, nil
}

// parseEvent parses "<prefix><id>:<used>".
func parseEvent(ev, prefix string) (id, used int64, ok bool) {
	rest, found := strings.CutPrefix(ev, prefix)
	a, b, cut := strings.Cut(rest, ":")
	if !found || !cut {
		return 0, 0, false
	}
	id, err1 := strconv.ParseInt(a, 10, 64)
	used, err2 := strconv.ParseInt(b, 10, 64)
	return id, used, err1 == nil && err2 == nil
}
