// Package segment is numberd's number domain: invoice numbers of a fixed width of
// 1..32 decimal digits, and segments, the contiguous ranges of them that a tax
// platform grants. It is pure: no I/O, no clocks.
//
// A number wider than 18 digits does not fit in an int64 (a 20-digit invoice number
// is YY + province + channel + a 14-digit sequence), so a number is held as a fixed
// prefix of digits plus an int64 suffix of its last 18 digits at most. All numbers of
// one segment share their prefix, which keeps arithmetic on a segment in int64.
package segment

import (
	"errors"
	"fmt"
	"strconv"
)

const (
	// MaxDigits is the widest number numberd handles.
	MaxDigits = 32
	// SuffixDigits is how many trailing digits vary within one segment; 10^18-1
	// is the widest all-nines value that fits in an int64.
	SuffixDigits = 18
	// MaxSize is the most numbers one segment may hold: 2^53, so that every offset
	// within a segment is exact in the double-precision numbers of Redis's Lua.
	// Granted segments are thousands of numbers, not quadrillions.
	MaxSize = 1 << 53
)

// ErrInvalid is wrapped by every validation failure of this package; the wrapping
// error's text says what is wrong and is fit to show to the caller.
var ErrInvalid = errors.New("invalid")

// ValidDigits reports whether width is a width numberd accepts.
func ValidDigits(width int) bool { return width >= 1 && width <= MaxDigits }

// suffixWidth is how many of a number's digits form its int64 suffix.
func suffixWidth(width int) int { return min(width, SuffixDigits) }

// Number is one number of a given width.
type Number struct {
	// Prefix holds the leading width-18 digits, empty for widths up to 18.
	Prefix string
	// Suffix is the value of the trailing digits.
	Suffix int64
	// Width is the count of digits, leading zeros included.
	Width int
}

// ParseNumber parses s as a number of exactly width digits. It returns an error
// wrapping ErrInvalid if width is out of range, s has another length, or s holds
// anything but the digits 0-9.
func ParseNumber(s string, width int) (Number, error) {
	if !ValidDigits(width) {
		return Number{}, fmt.Errorf("%w: digits must be 1..%d, got %d", ErrInvalid, MaxDigits, width)
	}
	if len(s) != width {
		return Number{}, fmt.Errorf("%w: %q has %d characters, the pool's numbers have %d digits", ErrInvalid, s, len(s), width)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return Number{}, fmt.Errorf("%w: %q holds a non-digit character", ErrInvalid, s)
		}
	}
	cut := width - suffixWidth(width)
	suffix, err := strconv.ParseInt(s[cut:], 10, 64)
	if err != nil {
		// Unreachable for at most 18 digits; kept so a change of SuffixDigits fails loudly.
		return Number{}, fmt.Errorf("%w: %q: %v", ErrInvalid, s, err)
	}
	return Number{Prefix: s[:cut], Suffix: suffix, Width: width}, nil
}

// String formats n with its full width, leading zeros kept.
func (n Number) String() string {
	return string(appendNumber(make([]byte, 0, n.Width), n.Prefix, n.Suffix, n.Width))
}

// Compare returns -1, 0 or +1 as n is below, equal to or above m. Numbers of different
// widths compare by width first.
func (n Number) Compare(m Number) int {
	switch {
	case n.Width != m.Width:
		return cmpInt(n.Width, m.Width)
	case n.Prefix != m.Prefix:
		if n.Prefix < m.Prefix {
			return -1
		}
		return 1
	default:
		return cmpInt(n.Suffix, m.Suffix)
	}
}

func cmpInt[T int | int64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// appendNumber appends prefix and suffix zero-padded to width digits. It sits on the
// allocation hot path, so it formats into dst without intermediate strings.
func appendNumber(dst []byte, prefix string, suffix int64, width int) []byte {
	dst = append(dst, prefix...)
	var digits [20]byte
	formatted := strconv.AppendInt(digits[:0], suffix, 10)
	for pad := width - len(prefix) - len(formatted); pad > 0; pad-- {
		dst = append(dst, '0')
	}
	return append(dst, formatted...)
}

// Range is a segment's span: every number from Start to End inclusive. Its numbers
// share Prefix and differ only in their suffix, Lo..Hi.
type Range struct {
	Prefix string
	Lo, Hi int64
	Width  int
}

// ParseRange parses the inclusive range start..end of numbers of width digits. It
// returns an error wrapping ErrInvalid if either end is not a number of that width,
// start is above end, the two differ in more than their last 18 digits, or the
// range holds more than MaxSize numbers.
func ParseRange(start, end string, width int) (Range, error) {
	lo, err := ParseNumber(start, width)
	if err != nil {
		return Range{}, fmt.Errorf("start: %w", err)
	}
	hi, err := ParseNumber(end, width)
	if err != nil {
		return Range{}, fmt.Errorf("end: %w", err)
	}
	if lo.Compare(hi) > 0 {
		return Range{}, fmt.Errorf("%w: start %s is above end %s", ErrInvalid, start, end)
	}
	if lo.Prefix != hi.Prefix {
		return Range{}, fmt.Errorf("%w: %s..%s differs in more than its last %d digits", ErrInvalid, start, end, SuffixDigits)
	}
	r := Range{Prefix: lo.Prefix, Lo: lo.Suffix, Hi: hi.Suffix, Width: width}
	if r.Size() > MaxSize {
		return Range{}, fmt.Errorf("%w: %s..%s holds %d numbers, more than the %d a segment may hold", ErrInvalid, start, end, r.Size(), int64(MaxSize))
	}
	return r, nil
}

// Size is the count of numbers in r; it never exceeds 10^18, nor MaxSize for a
// range from ParseRange.
func (r Range) Size() int64 { return r.Hi - r.Lo + 1 }

// Start formats r's first number.
func (r Range) Start() string { return r.Format(r.Lo) }

// End formats r's last number.
func (r Range) End() string { return r.Format(r.Hi) }

// Format formats the number of r with the given suffix.
func (r Range) Format(suffix int64) string {
	return string(r.AppendFormat(make([]byte, 0, r.Width), suffix))
}

// AppendFormat appends the number of r with the given suffix to dst.
func (r Range) AppendFormat(dst []byte, suffix int64) []byte {
	return appendNumber(dst, r.Prefix, suffix, r.Width)
}

// Overlaps reports whether r and o share at least one number.
func (r Range) Overlaps(o Range) bool {
	return r.Width == o.Width && r.Prefix == o.Prefix && r.Lo <= o.Hi && o.Lo <= r.Hi
}

// Contains reports whether n is one of r's numbers.
func (r Range) Contains(n Number) bool {
	return n.Width == r.Width && n.Prefix == r.Prefix && n.Suffix >= r.Lo && n.Suffix <= r.Hi
}

// String formats r as start..end.
func (r Range) String() string { return r.Start() + ".." + r.End() }
