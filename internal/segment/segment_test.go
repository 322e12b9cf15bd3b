package segment_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/numberd/numberd/internal/segment"
)

func TestParseNumber(t *testing.T) {
	tests := []struct {
		in      string
		width   int
		prefix  string
		suffix  int64
		wantErr bool
	}{
		{in: "7", width: 1, suffix: 7},
		{in: "000000000000000042", width: 18, suffix: 42},
		{in: "999999999999999999", width: 18, suffix: 999999999999999999},
		{in: "24442000000000000001", width: 20, prefix: "24", suffix: 442000000000000001},
		{in: "12345678901234567890123456789012", width: 32, prefix: "12345678901234", suffix: 567890123456789012},
		{in: "00000000000000000000000000000000", width: 32, prefix: "00000000000000", suffix: 0},
		{in: "12", width: 3, wantErr: true},
		{in: "1234", width: 3, wantErr: true},
		{in: "12a", width: 3, wantErr: true},
		{in: "-12", width: 3, wantErr: true},
		{in: "+12", width: 3, wantErr: true},
		{in: " 12", width: 3, wantErr: true},
		{in: "１２", width: 2, wantErr: true},
		{in: "", width: 0, wantErr: true},
		{in: strings.Repeat("1", 33), width: 33, wantErr: true},
	}
	for _, tt := range tests {
		got, err := segment.ParseNumber(tt.in, tt.width)
		if tt.wantErr {
			if !errors.Is(err, segment.ErrInvalid) {
				t.Errorf("ParseNumber(%q, %d) error = %v, want ErrInvalid", tt.in, tt.width, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseNumber(%q, %d): %v", tt.in, tt.width, err)
			continue
		}
		if got.Prefix != tt.prefix || got.Suffix != tt.suffix || got.Width != tt.width {
			t.Errorf("ParseNumber(%q) = %+v, want prefix %q suffix %d", tt.in, got, tt.prefix, tt.suffix)
		}
		if s := got.String(); s != tt.in {
			t.Errorf("ParseNumber(%q).String() = %q", tt.in, s)
		}
	}
}

func TestCompare(t *testing.T) {
	parse := func(s string) segment.Number {
		n, err := segment.ParseNumber(s, len(s))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	tests := []struct {
		a, b string
		want int
	}{
		{"00000000000000000001", "00000000000000000002", -1},
		{"01000000000000000000", "00999999999999999999", 1},
		{"12345", "12345", 0},
		{"99", "100", -1},
	}
	for _, tt := range tests {
		if got := parse(tt.a).Compare(parse(tt.b)); got != tt.want {
			t.Errorf("Compare(%s, %s) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := parse(tt.b).Compare(parse(tt.a)); got != -tt.want {
			t.Errorf("Compare(%s, %s) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
	}
}

func TestParseRange(t *testing.T) {
	tests := []struct {
		start, end string
		width      int
		size       int64
		wantErr    string
	}{
		{start: "24442000000000000001", end: "24442000000000001000", width: 20, size: 1000},
		{start: "0001", end: "0001", width: 4, size: 1},
		{start: "000000000000000000", end: "009007199254740991", width: 18, size: 1 << 53},
		{start: "000000000000000000", end: "009007199254740992", width: 18, wantErr: "more than"},
		{start: "000000000000000000", end: "999999999999999999", width: 18, wantErr: "more than"},
		{start: "0010", end: "0009", width: 4, wantErr: "above"},
		{start: "00999999999999999999", end: "01000000000000000005", width: 20, wantErr: "last 18 digits"},
		{start: "001", end: "0010", width: 4, wantErr: "start"},
		{start: "0001", end: "00x0", width: 4, wantErr: "end"},
	}
	for _, tt := range tests {
		r, err := segment.ParseRange(tt.start, tt.end, tt.width)
		if tt.wantErr != "" {
			if !errors.Is(err, segment.ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseRange(%s, %s) error = %v, want ErrInvalid mentioning %q", tt.start, tt.end, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseRange(%s, %s): %v", tt.start, tt.end, err)
			continue
		}
		if r.Size() != tt.size || r.Start() != tt.start || r.End() != tt.end {
			t.Errorf("ParseRange(%s, %s) = size %d %s, want size %d", tt.start, tt.end, r.Size(), r, tt.size)
		}
	}
}

func TestOverlaps(t *testing.T) {
	mustRange := func(start, end string) segment.Range {
		t.Helper()
		r, err := segment.ParseRange(start, end, len(start))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	base := mustRange("10000000000000000100", "10000000000000000200")
	tests := []struct {
		name       string
		start, end string
		want       bool
	}{
		{"identical", "10000000000000000100", "10000000000000000200", true},
		{"inside", "10000000000000000150", "10000000000000000160", true},
		{"around", "10000000000000000001", "10000000000000000999", true},
		{"touches start", "10000000000000000001", "10000000000000000100", true},
		{"touches end", "10000000000000000200", "10000000000000000300", true},
		{"adjacent below", "10000000000000000001", "10000000000000000099", false},
		{"adjacent above", "10000000000000000201", "10000000000000000300", false},
		{"other prefix, same suffix", "11000000000000000100", "11000000000000000200", false},
	}
	for _, tt := range tests {
		o := mustRange(tt.start, tt.end)
		if got := base.Overlaps(o); got != tt.want {
			t.Errorf("%s: Overlaps = %v, want %v", tt.name, got, tt.want)
		}
		if got := o.Overlaps(base); got != tt.want {
			t.Errorf("%s: reversed Overlaps = %v, want %v", tt.name, got, tt.want)
		}
	}
	short := mustRange("100", "200")
	if short.Overlaps(mustRange("0100", "0200")) {
		t.Error("ranges of different widths overlap")
	}
}

func TestContainsAndFormat(t *testing.T) {
	r, err := segment.ParseRange("24442000000000000001", "24442000000000001000", 20)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Format(r.Lo+41), "24442000000000000042"; got != want {
		t.Errorf("Format = %s, want %s", got, want)
	}
	for s, want := range map[string]bool{
		"24442000000000000001": true,
		"24442000000000001000": true,
		"24442000000000001001": false,
		"24442000000000000000": false,
		"25442000000000000500": false,
	} {
		n, err := segment.ParseNumber(s, 20)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Contains(n); got != want {
			t.Errorf("Contains(%s) = %v, want %v", s, got, want)
		}
	}
}

func FuzzNumberRoundTrip(f *testing.F) {
	for _, seed := range []string{"0", "42", "000000000000000000", "24442000000000000001", "12345678901234567890123456789012", "9x", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := segment.ParseNumber(s, len(s))
		if err != nil {
			if !errors.Is(err, segment.ErrInvalid) {
				t.Fatalf("ParseNumber(%q) error %v does not wrap ErrInvalid", s, err)
			}
			return
		}
		if got := n.String(); got != s {
			t.Fatalf("round trip %q -> %q", s, got)
		}
		r, err := segment.ParseRange(s, s, len(s))
		if err != nil {
			t.Fatalf("ParseRange(%q, %q): %v", s, s, err)
		}
		if r.Size() != 1 || !r.Contains(n) || r.Start() != s {
			t.Fatalf("single-number range of %q: %+v", s, r)
		}
	})
}

func FuzzRangeFormat(f *testing.F) {
	f.Add("24", int64(442000000000000001), int64(10), 20)
	f.Add("", int64(0), int64(0), 1)
	f.Fuzz(func(t *testing.T, prefix string, lo, span int64, width int) {
		if !segment.ValidDigits(width) || lo < 0 || span < 0 {
			return
		}
		sw := min(width, segment.SuffixDigits)
		limit := int64(1)
		for range sw {
			limit *= 10
		}
		lo %= limit
		hi := lo + span%min(limit-lo, segment.MaxSize)
		p := make([]byte, width-sw)
		for i := range p {
			if i < len(prefix) {
				p[i] = '0' + prefix[i]%10
			} else {
				p[i] = '0'
			}
		}
		r := segment.Range{Prefix: string(p), Lo: lo, Hi: hi, Width: width}
		back, err := segment.ParseRange(r.Start(), r.End(), width)
		if err != nil {
			t.Fatalf("ParseRange(%s, %s): %v", r.Start(), r.End(), err)
		}
		if back != r {
			t.Fatalf("round trip %+v -> %+v", r, back)
		}
	})
}
