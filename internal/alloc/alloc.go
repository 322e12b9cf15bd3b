// Package alloc holds numberd's allocation engines: the rules by which numbers leave
// a pool, and the pool, segment and gap views that depend on the live allocation
// state. The embedded engine (Embedded) runs in-process over an SQLite store.
//
// Every engine keeps the invariants of docs/DESIGN.md: a number is handed out at
// most once; no number above a segment's durable high-water mark is handed out; an
// allocation is all or nothing; an idempotency key answers the same numbers again.
package alloc

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/numberd/numberd/internal/segment"
)

// encodeSpans writes spans compactly for an idempotency record: one
// "prefix:lo-hi" per span, separated by ";".
func encodeSpans(spans []segment.Range) string {
	var b strings.Builder
	for i, s := range spans {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(s.Prefix)
		b.WriteByte(':')
		b.WriteString(strconv.FormatInt(s.Lo, 10))
		b.WriteByte('-')
		b.WriteString(strconv.FormatInt(s.Hi, 10))
	}
	return b.String()
}

func decodeSpans(text string, width int) ([]segment.Range, error) {
	var spans []segment.Range
	for part := range strings.SplitSeq(text, ";") {
		prefix, bounds, ok1 := strings.Cut(part, ":")
		lo, hi, ok2 := strings.Cut(bounds, "-")
		l, err1 := strconv.ParseInt(lo, 10, 64)
		h, err2 := strconv.ParseInt(hi, 10, 64)
		if !ok1 || !ok2 || err1 != nil || err2 != nil || l > h {
			return nil, fmt.Errorf("alloc: corrupt idempotency record %q", text)
		}
		spans = append(spans, segment.Range{Prefix: prefix, Lo: l, Hi: h, Width: width})
	}
	return spans, nil
}

// addSat adds without overflow: counts of up to 10^18 per segment can exceed an int64
// when summed over many segments.
func addSat(a, b int64) int64 {
	if b > 0 && a > (1<<63-1)-b {
		return 1<<63 - 1
	}
	return a + b
}
