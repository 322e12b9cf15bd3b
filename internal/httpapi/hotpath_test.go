package httpapi

import (
	"encoding/json"
	"testing"

	"github.com/numberd/numberd/api"
)

// FuzzDecodeAllocate checks that the hand-written decoding of allocation bodies
// agrees with the strict decoder on every well-formed body.
func FuzzDecodeAllocate(f *testing.F) {
	for _, seed := range []string{``, ` `, `{}`, `{"count":5}`, ` { "count" : 12 } `, `{"count":1.5}`, `{"count":1e3}`,
		`{"count":"5"}`, `{"count":5,"x":1}`, `{"Count":5}`, `{"count":99999999999}`, `{"count":-1}`, `[1]`, `null`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		if len(body) > 0 && !json.Valid([]byte(body)) {
			return // limitBody answers these before
		}
		got, gotErr := decodeAllocate([]byte(body))
		var want *api.AllocateRequest
		var wantErr error
		if trimmed := string(trim([]byte(body))); trimmed != "" {
			var r api.AllocateRequest
			if wantErr = json.Unmarshal([]byte(body), &r); wantErr == nil {
				want = &r
			}
		}
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("%q: hand-decoded error %v, strict error %v", body, gotErr, wantErr)
		}
		if (got == nil) != (want == nil) || got != nil && ((got.Count == nil) != (want.Count == nil) || got.Count != nil && *got.Count != *want.Count) {
			t.Fatalf("%q: hand-decoded %+v, strict %+v", body, got, want)
		}
	})
}

func trim(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
