// Package alloc holds what numberd's two allocation engines share: their
// Options, the lease that sizes reservations ahead of need, the Combiner that
// batches waiting callers, the pool Registry, the live status view and the
// idempotency records' span format. The engines themselves are in embedded
// (in-process, over SQLite) and distributed (Redis and MySQL); alloctest holds
// the contract both keep.
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

// EncodeSpans writes spans compactly for an idempotency record: one
// "prefix:lo-hi" per span, separated by ";".
func EncodeSpans(spans []segment.Range) string {
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

func DecodeSpans(text string, width int) ([]segment.Range, error) {
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
