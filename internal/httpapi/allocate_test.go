package httpapi

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/numberd/numberd/api"
)

// FuzzDecodeCount checks that the hand-written decoding of allocation bodies
// agrees with the strict decoder on every well-formed body.
func FuzzDecodeCount(f *testing.F) {
	for _, seed := range []string{``, ` `, `{}`, `{"count":5}`, ` { "count" : 12 } `, `{"count":1.5}`, `{"count":1e3}`,
		`{"count":"5"}`, `{"count":5,"x":1}`, `{"Count":5}`, `{"count":99999999999}`, `{"count":-1}`, `[1]`, `null`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		if len(body) > 0 && !json.Valid([]byte(body)) {
			return // limitBody answers these before
		}
		got, gotErr := decodeCount([]byte(body))
		want, wantErr := 1, error(nil)
		if len(bytes.TrimSpace([]byte(body))) > 0 {
			var r api.AllocateRequest
			if wantErr = json.Unmarshal([]byte(body), &r); wantErr == nil && r.Count != nil {
				want = *r.Count
			}
		}
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("%q: hand-decoded error %v, strict error %v", body, gotErr, wantErr)
		}
		if gotErr == nil && got != want {
			t.Fatalf("%q: hand-decoded %d, strict %d", body, got, want)
		}
	})
}
