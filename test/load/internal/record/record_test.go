package record_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/numberd/numberd/test/load/internal/record"
)

func TestRunsRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		numbers []string
		want    string
	}{
		{"one", []string{"24442000000000000001"}, "N\tp\t24442000000000000001:1\n"},
		{"ascending batch", []string{"24442000000000000009", "24442000000000000010", "24442000000000000011"}, "N\tp\t24442000000000000009:3\n"},
		{"two segments", []string{"24442000000000000999", "24442000000000001000", "24442000000000005001"}, "N\tp\t24442000000000000999:2 24442000000000005001:1\n"},
		{"head changes", []string{"24999999999999999999", "25000000000000000000"}, "N\tp\t24999999999999999999:1 25000000000000000000:1\n"},
		{"short width", []string{"0041", "0042"}, "N\tp\t0041:2\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runs, err := record.Runs("p", tt.numbers)
			if err != nil {
				t.Fatal(err)
			}
			got := string(record.AppendLine(nil, "p", runs))
			if got != tt.want {
				t.Fatalf("line = %q, want %q", got, tt.want)
			}
			back, ok, err := record.ParseLine(strings.TrimSuffix(got, "\n"))
			if err != nil || !ok {
				t.Fatalf("ParseLine = %v, %v", ok, err)
			}
			var n int64
			for _, r := range back {
				n += r.Count
			}
			if n != int64(len(tt.numbers)) {
				t.Fatalf("parsed %d numbers, want %d", n, len(tt.numbers))
			}
		})
	}
}

func TestParseLineRejects(t *testing.T) {
	for _, line := range []string{
		"N\t\t0001:1",
		"N\tp\t",
		"N\tp\t0001",
		"N\tp\t0001:0",
		"N\tp\t00x1:1",
		"N\tp\t9999:2",
	} {
		if _, ok, err := record.ParseLine(line); !ok || !errors.Is(err, record.ErrSyntax) {
			t.Errorf("ParseLine(%q) = ok %v, err %v; want a syntax error", line, ok, err)
		}
	}
	if _, ok, err := record.ParseLine("time=... level=warning msg=not a record"); ok || err != nil {
		t.Errorf("a non-record line: ok %v, err %v; want skipped", ok, err)
	}
}
