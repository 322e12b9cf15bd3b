package distributed

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/numberd/numberd"
)

// The codes the scripts answer: allocate.lua OK, RESEED or STALE; resolve.lua
// VOID, or the memo, allocate.lua's OK answer; seed.lua NEWER, or its report;
// retire.lua OK, ABSENT or RESEED; lease.lua and add.lua OK, or else a refusal.
const (
	replyOK     = "OK"
	replyReseed = "RESEED"
	replyStale  = "STALE"
	replyVoid   = "VOID"
	replyNewer  = "NEWER"
	replyAbsent = "ABSENT"
)

// The letters of allocate.lua's OK answer, one per request.
const (
	letterAllocated = "A" // took its numbers
	letterReplayed  = "R" // its key's numbers, answered again
	letterConflict  = "C" // its key was used for another request
	letterExhausted = "X" // not enough numbers
	letterUnleased  = "L" // not enough reserved numbers: the lease must grow
)

// allocateReply is allocate.lua's answer (see its header).
type allocateReply struct {
	code  string // replyOK, replyReseed or replyStale
	why   string // with RESEED: why the state cannot be used
	stale int64  // with RESEED: the state's generation, or -1 when unknown

	// With OK:
	gen, ver, available, leased int64
	letters                     string          // one a request ("" for none)
	runs                        []offsetRun     // what the call handed out, in order
	replays                     [][]offsetRun   // the numbers of each R, in order
	expired                     []segmentUse    // the segments the call found expired
	used                        map[int64]int64 // of each open segment, when a request was replayed
}

// segmentUse is how many numbers of a segment a state has used.
type segmentUse struct{ seg, used int64 }

// parseAllocateReply reads allocate.lua's answer to a call of n requests.
func parseAllocateReply(reply string, n int) (allocateReply, error) {
	f := strings.Fields(reply)
	malformed := fmt.Errorf("%w: malformed allocate answer %q", numberd.ErrRedisUnavailable, reply)
	switch {
	case len(f) == 1 && f[0] == replyStale:
		return allocateReply{code: replyStale}, nil
	case len(f) == 3 && f[0] == replyReseed:
		// "-", or a generation Go cannot read, is unknown: the reseed decides
		// afresh under the pool's lock (see leaser.reseed).
		stale, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			stale = -1
		}
		return allocateReply{code: replyReseed, why: f[1], stale: stale}, nil
	}
	letters := ""
	if len(f) >= 8 && !(n == 0 && f[6] == "-") {
		letters = f[6]
	}
	if len(f) < 8 || f[0] != replyOK || f[5] != strconv.Itoa(n) || len(letters) != n {
		return allocateReply{}, malformed
	}
	r := allocateReply{code: replyOK, letters: letters}
	for i, v := range []*int64{&r.gen, &r.ver, &r.available, &r.leased} {
		var err error
		if *v, err = strconv.ParseInt(f[1+i], 10, 64); err != nil {
			return allocateReply{}, malformed
		}
	}
	var err error
	if r.runs, err = parseRuns(f[7]); err != nil {
		return allocateReply{}, err
	}
	// R:<spans> for each R, then E:<id>:<used>, then U:<id>:<used>.
	tail := f[8:]
	for len(tail) > 0 && strings.HasPrefix(tail[len(tail)-1], "U:") {
		u, err := parseUse(tail[len(tail)-1], "U:")
		if err != nil {
			return allocateReply{}, fmt.Errorf("%w: malformed used count %q in allocate answer", numberd.ErrRedisUnavailable, tail[len(tail)-1])
		}
		if r.used == nil {
			r.used = map[int64]int64{}
		}
		r.used[u.seg] = u.used
		tail = tail[:len(tail)-1]
	}
	for range strings.Count(letters, letterReplayed) {
		spans, ok := "", false
		if len(tail) > 0 {
			spans, ok = strings.CutPrefix(tail[0], "R:")
		}
		if !ok {
			return allocateReply{}, fmt.Errorf("%w: allocate answer %q lacks a replay", numberd.ErrRedisUnavailable, reply)
		}
		runs, err := parseRuns(spans)
		if err != nil {
			return allocateReply{}, err
		}
		r.replays, tail = append(r.replays, runs), tail[1:]
	}
	for _, ev := range tail {
		u, err := parseUse(ev, "E:")
		if err != nil {
			return allocateReply{}, fmt.Errorf("%w: malformed event %q in allocate answer", numberd.ErrRedisUnavailable, ev)
		}
		r.expired = append(r.expired, u)
	}
	return r, nil
}

// resolveReply is resolve.lua's answer: the call's memo, or void.
type resolveReply struct {
	void bool          // the call never ran, and now never will
	memo allocateReply // what it answered, if it ran
}

// parseResolveReply reads resolve.lua's answer for a call of n requests.
func parseResolveReply(reply string, n int) (resolveReply, error) {
	if reply == replyVoid {
		return resolveReply{void: true}, nil
	}
	memo, err := parseAllocateReply(reply, n)
	if err != nil {
		return resolveReply{}, err
	}
	if memo.code != replyOK {
		return resolveReply{}, fmt.Errorf("%w: malformed memo %q", numberd.ErrRedisUnavailable, reply)
	}
	return resolveReply{memo: memo}, nil
}

// seedReply is seed.lua's answer.
type seedReply struct {
	newer    bool           // a state of a later generation is in place; nothing changed
	newerGen int64          // with newer: that generation
	run      string         // the run id the new state was stamped with
	replaced *replacedState // nil: no usable state was replaced
}

// replacedState is seed.lua's report of the state it replaced, when usable.
type replacedState struct {
	gen, ver int64
	used     map[int64]int64 // per segment, the numbers it had used
}

// parseSeedReply reads seed.lua's answer: NEWER <gen>, or <run> -, or
// <run> <gen> <ver> <id>:<used>... A NEWER answer says so with its error too.
func parseSeedReply(reply string) (seedReply, error) {
	f := strings.Fields(reply)
	malformed := fmt.Errorf("%w: malformed seed answer %q", numberd.ErrRedisUnavailable, reply)
	if len(f) > 0 && f[0] == replyNewer {
		if len(f) != 2 {
			return seedReply{newer: true}, malformed
		}
		gen, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return seedReply{newer: true}, malformed
		}
		return seedReply{newer: true, newerGen: gen}, nil
	}
	if len(f) < 2 || (f[1] == "-") != (len(f) == 2) {
		return seedReply{}, malformed
	}
	r := seedReply{run: f[0]}
	if f[1] == "-" {
		return r, nil // no usable state was replaced
	}
	rs := &replacedState{used: map[int64]int64{}}
	var err1, err2 error
	rs.gen, err1 = strconv.ParseInt(f[1], 10, 64)
	rs.ver, err2 = strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		return seedReply{}, malformed
	}
	for _, field := range f[3:] {
		u, err := parseUse(field, "")
		if err != nil {
			return seedReply{}, malformed
		}
		rs.used[u.seg] = u.used
	}
	r.replaced = rs
	return r, nil
}

// retireReply is retire.lua's answer.
type retireReply struct {
	code      string // replyOK, replyAbsent or replyReseed
	used, gen int64  // with OK: the segment's used count; with OK and ABSENT, the state's generation
}

// parseRetireReply reads retire.lua's answer: OK <used> <gen>, ABSENT <gen>, or RESEED.
func parseRetireReply(reply string) (retireReply, error) {
	f := strings.Fields(reply)
	malformed := fmt.Errorf("%w: malformed retire answer %q", numberd.ErrRedisUnavailable, reply)
	var r retireReply
	var err error
	switch {
	case len(f) == 1 && f[0] == replyReseed:
		return retireReply{code: replyReseed}, nil
	case len(f) == 2 && f[0] == replyAbsent:
		r.code = replyAbsent
		r.gen, err = strconv.ParseInt(f[1], 10, 64)
	case len(f) == 3 && f[0] == replyOK:
		r.code = replyOK
		r.used, err = strconv.ParseInt(f[1], 10, 64)
		if err == nil {
			r.gen, err = strconv.ParseInt(f[2], 10, 64)
		}
	default:
		err = malformed
	}
	if err != nil {
		return retireReply{}, malformed
	}
	return r, nil
}

// parsePeek reads peek.lua's answer for the segments ids.
func parsePeek(reply string, ids []int64) (redisView, error) {
	f := strings.Fields(reply)
	malformed := fmt.Errorf("%w: malformed peek answer %q", numberd.ErrRedisUnavailable, reply)
	if len(f) != 4+len(ids) || (f[0] != replyOK && f[0] != replyReseed) {
		return redisView{}, malformed
	}
	v := redisView{ok: f[0] == replyOK, segs: map[int64]redisSeg{}}
	var err error
	if f[1] != "-" {
		if v.gen, err = strconv.ParseInt(f[1], 10, 64); err != nil {
			return redisView{}, malformed
		}
	}
	if v.ver, err = strconv.ParseInt(f[2], 10, 64); err != nil {
		v.ok = false // a damaged version: the state must be reseeded
	}
	if f[3] != "-" {
		for q := range strings.SplitSeq(f[3], ",") {
			id, err := strconv.ParseInt(q, 10, 64)
			if err != nil {
				v.ok = false
				continue
			}
			v.queue = append(v.queue, id)
		}
	}
	for _, field := range f[4:] {
		parts := strings.Split(field, ":")
		if len(parts) != 5 {
			return redisView{}, malformed
		}
		id, err := strconv.ParseInt(parts[0], 10, 64)
		if err != nil {
			return redisView{}, malformed
		}
		s := redisSeg{present: parts[1] != "-"}
		var err1, err2 error
		if s.present {
			s.used, err1 = strconv.ParseInt(parts[1], 10, 64)
		}
		if parts[2] != "-" {
			s.lease, err2 = strconv.ParseInt(parts[2], 10, 64)
		}
		if err1 != nil || err2 != nil {
			// Damaged fields: unusable, and what they show is no mark.
			v.ok, s = false, redisSeg{}
		}
		if parts[3] != "-" {
			s.state = parts[3]
		}
		s.memoFrom = -1
		if parts[4] != "-" {
			if s.memoFrom, err = strconv.ParseInt(parts[4], 10, 64); err != nil {
				return redisView{}, malformed
			}
		}
		v.segs[id] = s
	}
	return v, nil
}

// parseUse parses "<prefix><id>:<used>".
func parseUse(tok, prefix string) (segmentUse, error) {
	rest, found := strings.CutPrefix(tok, prefix)
	a, b, cut := strings.Cut(rest, ":")
	if !found || !cut {
		return segmentUse{}, fmt.Errorf("%w: malformed %q", numberd.ErrRedisUnavailable, tok)
	}
	id, err1 := strconv.ParseInt(a, 10, 64)
	used, err2 := strconv.ParseInt(b, 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return segmentUse{}, fmt.Errorf("%w: malformed %q: %v", numberd.ErrRedisUnavailable, tok, err)
	}
	return segmentUse{seg: id, used: used}, nil
}

// offsetRun is numbers of a segment by offset from its first: from..to.
type offsetRun struct {
	seg      int64
	from, to int64
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
