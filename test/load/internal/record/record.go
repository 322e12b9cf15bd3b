// Package record is the format in which load generators write down the numbers
// numberd answered, so that a checker can prove afterwards that none was handed
// out twice.
//
// One line per allocation answer (or per group of answers):
//
//	N<TAB><pool><TAB><first>:<count>[ <first>:<count>…]
//
// Each <first>:<count> is a run of consecutive numbers starting at <first>, a
// decimal string of the pool's width, leading zeros kept. An answer of 1000
// ascending numbers is usually one run, two when it spans two segments. Lines
// that do not start with "N\t" are not records (a k6 log file holds k6's own
// warnings too) and are skipped by Scanner.
//
// The k6 scenarios in test/load/k6 write the same format from JavaScript
// (lib.js, record()).
package record

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// tailDigits is how many trailing digits of a number are held as an int64. A
// segment's numbers share everything but their last 18 digits (api/openapi.yaml), so a run
// never needs more.
const tailDigits = 18

// Key names the sequence a number belongs to: its pool, its width and the
// digits above the last 18 (empty for numbers of 18 digits or fewer).
type Key struct {
	Pool  string
	Width int
	Head  string
}

// Run is Count consecutive numbers from First (the last 18 digits, as an int64).
type Run struct {
	Key   Key
	First int64
	Count int64
}

// Last is the run's last number's last 18 digits.
func (r Run) Last() int64 { return r.First + r.Count - 1 }

// Format writes the number whose last 18 digits are tail in k's width.
func (k Key) Format(tail int64) string {
	w := min(k.Width, tailDigits)
	return k.Head + fmt.Sprintf("%0*d", w, tail)
}

// ErrSyntax is wrapped by every parse error.
var ErrSyntax = errors.New("record: syntax error")

// Parse splits a decimal number into its key and tail.
func Parse(pool, number string) (Key, int64, error) {
	if number == "" || len(number) > 64 {
		return Key{}, 0, fmt.Errorf("%w: number %q", ErrSyntax, number)
	}
	for i := 0; i < len(number); i++ {
		if number[i] < '0' || number[i] > '9' {
			return Key{}, 0, fmt.Errorf("%w: number %q has a non-digit", ErrSyntax, number)
		}
	}
	cut := max(0, len(number)-tailDigits)
	tail, err := strconv.ParseInt(number[cut:], 10, 64)
	if err != nil {
		return Key{}, 0, fmt.Errorf("%w: number %q: %v", ErrSyntax, number, err)
	}
	return Key{Pool: pool, Width: len(number), Head: number[:cut]}, tail, nil
}

// Runs groups one answer's numbers into runs of consecutive numbers.
func Runs(pool string, numbers []string) ([]Run, error) {
	var runs []Run
	for _, n := range numbers {
		k, t, err := Parse(pool, n)
		if err != nil {
			return nil, err
		}
		if l := len(runs); l > 0 && runs[l-1].Key == k && runs[l-1].Last()+1 == t {
			runs[l-1].Count++
			continue
		}
		runs = append(runs, Run{Key: k, First: t, Count: 1})
	}
	return runs, nil
}

// AppendLine appends the record line of runs (all of one pool) to buf.
func AppendLine(buf []byte, pool string, runs []Run) []byte {
	buf = append(buf, "N\t"...)
	buf = append(buf, pool...)
	buf = append(buf, '\t')
	for i, r := range runs {
		if i > 0 {
			buf = append(buf, ' ')
		}
		buf = append(buf, r.Key.Format(r.First)...)
		buf = append(buf, ':')
		buf = strconv.AppendInt(buf, r.Count, 10)
	}
	return append(buf, '\n')
}

// ParseLine parses one record line (without its newline). ok is false for a line
// that is not a record.
func ParseLine(line string) (runs []Run, ok bool, err error) {
	rest, found := strings.CutPrefix(line, "N\t")
	if !found {
		return nil, false, nil
	}
	pool, list, found := strings.Cut(rest, "\t")
	if !found || pool == "" {
		return nil, true, fmt.Errorf("%w: no pool in %q", ErrSyntax, line)
	}
	for _, f := range strings.Fields(list) {
		num, cnt, found := strings.Cut(f, ":")
		if !found {
			return nil, true, fmt.Errorf("%w: run %q has no count", ErrSyntax, f)
		}
		k, t, err := Parse(pool, num)
		if err != nil {
			return nil, true, err
		}
		c, err := strconv.ParseInt(cnt, 10, 64)
		if err != nil || c < 1 {
			return nil, true, fmt.Errorf("%w: run %q has a bad count", ErrSyntax, f)
		}
		if t > maxTail(k.Width)-(c-1) {
			return nil, true, fmt.Errorf("%w: run %q overflows the number's width", ErrSyntax, f)
		}
		runs = append(runs, Run{Key: k, First: t, Count: c})
	}
	if len(runs) == 0 {
		return nil, true, fmt.Errorf("%w: no runs in %q", ErrSyntax, line)
	}
	return runs, true, nil
}

func maxTail(width int) int64 {
	m := int64(1)
	for range min(width, tailDigits) {
		m *= 10
	}
	return m - 1
}

// Scan reads record lines from r and calls fn for each run. It returns the first
// syntax error with its line number, or the reader's error.
func Scan(r io.Reader, fn func(Run)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	line := 0
	for sc.Scan() {
		line++
		runs, ok, err := ParseLine(sc.Text())
		if err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		if !ok {
			continue
		}
		for _, r := range runs {
			fn(r)
		}
	}
	return sc.Err()
}
