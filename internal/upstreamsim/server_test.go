package upstreamsim_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/numberd/numberd/internal/refill"
	"github.com/numberd/numberd/internal/segment"
	"github.com/numberd/numberd/internal/testenv"
	"github.com/numberd/numberd/internal/upstreamsim"
)

// answer is a decoded answer of the simulator.
type answer struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    string
}

func (a answer) String() string { return fmt.Sprintf("%d %s", a.Status, strings.TrimSpace(a.Raw)) }

// Str returns the string member key of the body, or "".
func (a answer) Str(key string) string {
	s, _ := a.Body[key].(string)
	return s
}

// do sends method path with body (a string, sent as is) and headers to srv.
func do(tb testing.TB, srv *httptest.Server, method, path, body string, headers ...string) answer {
	tb.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	a := answer{Status: resp.StatusCode, Header: resp.Header, Raw: string(raw)}
	if err := json.Unmarshal(raw, &a.Body); err != nil {
		tb.Fatalf("%s %s: answer %d is not a JSON object: %v: %q", method, path, resp.StatusCode, err, raw)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		tb.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	return a
}

// apply posts one request of the protocol to srv, with headers.
func apply(tb testing.TB, srv *httptest.Server, pool string, quantity int64, ywlsh string, headers ...string) answer {
	tb.Helper()
	body, _ := json.Marshal(map[string]any{"pool": pool, "quantity": quantity, "ywlsh": ywlsh})
	return do(tb, srv, http.MethodPost, "/segments", string(body), headers...)
}

// wantGrant fails tb unless a is a 200 granting start..end to ywlsh.
func wantGrant(tb testing.TB, a answer, ywlsh, start, end string) {
	tb.Helper()
	if a.Status != http.StatusOK || a.Str("ywlsh") != ywlsh || a.Str("start") != start || a.Str("end") != end || len(a.Body) != 3 {
		tb.Errorf("got %s, want 200 {ywlsh: %s, start: %s, end: %s}", a, ywlsh, start, end)
	}
}

// wantError fails tb unless a is an error answer of status with a message.
func wantError(tb testing.TB, a answer, status int) {
	tb.Helper()
	if a.Status != status || a.Str("error") == "" || len(a.Body) != 1 {
		tb.Errorf("got %s, want %d {error: …}", a, status)
	}
}

func wantStats(tb testing.TB, sim *upstreamsim.Server, want upstreamsim.Stats) {
	tb.Helper()
	if got := sim.Stats(); got != want {
		tb.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts upstreamsim.Options
	}{
		{"digits 0", upstreamsim.Options{}},
		{"digits 33", upstreamsim.Options{Digits: 33}},
		{"first too short", upstreamsim.Options{Digits: 20, First: "1"}},
		{"first not digits", upstreamsim.Options{Digits: 4, First: "12a4"}},
		{"negative latency", upstreamsim.Options{Digits: 20, Latency: -time.Second}},
		{"fail rate below 0", upstreamsim.Options{Digits: 20, FailRate: -0.1}},
		{"fail rate above 1", upstreamsim.Options{Digits: 20, FailRate: 1.1}},
		{"lose rate above 1", upstreamsim.Options{Digits: 20, LoseRate: 2}},
		{"lose rate NaN", upstreamsim.Options{Digits: 20, LoseRate: math.NaN()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if sim, err := upstreamsim.New(tt.opts); err == nil {
				t.Errorf("New(%+v) = %v, nil; want an error", tt.opts, sim)
			}
		})
	}
	sim, err := upstreamsim.New(upstreamsim.Options{Digits: 20})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range [][2]float64{{-1, 0}, {0, 1.5}, {math.NaN(), 0}} {
		if err := sim.SetRates(r[0], r[1]); err == nil {
			t.Errorf("SetRates(%v, %v) = nil, want an error", r[0], r[1])
		}
	}
}

func TestServerGrantsConsecutiveSegments(t *testing.T) {
	type grant struct {
		quantity   int64
		start, end string
	}
	tests := []struct {
		name   string
		digits int
		first  string
		grants []grant
	}{
		{"20 digits from the default first", 20, "", []grant{
			{1000, "00000000000000000001", "00000000000000001000"},
			{1, "00000000000000001001", "00000000000000001001"},
			{5, "00000000000000001002", "00000000000000001006"},
		}},
		{"20 digits from a given first", 20, "24442000000000000001", []grant{
			{5000, "24442000000000000001", "24442000000000005000"},
			{1000, "24442000000000005001", "24442000000000006000"},
		}},
		{"32 digits", 32, "", []grant{
			{3, strings.Repeat("0", 31) + "1", strings.Repeat("0", 31) + "3"},
			{1000000, strings.Repeat("0", 31) + "4", strings.Repeat("0", 25) + "1000003"},
		}},
		{"8 digits", 8, "12345678", []grant{
			{2, "12345678", "12345679"},
			{100, "12345680", "12345779"},
		}},
		{"1 digit", 1, "", []grant{
			{4, "1", "4"},
			{5, "5", "9"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, srv := testenv.UpstreamSim(t, upstreamsim.Options{Digits: tt.digits, First: tt.first})
			var numbers int64
			for i, g := range tt.grants {
				a := apply(t, srv, "p", g.quantity, fmt.Sprintf("y%d", i))
				wantGrant(t, a, fmt.Sprintf("y%d", i), g.start, g.end)
				numbers += g.quantity
			}
			n := int64(len(tt.grants))
			wantStats(t, sim, upstreamsim.Stats{Applies: n, Granted: n, Numbers: numbers})
		})
	}
}

func TestServerSameYwlshAnswersTheSameRange(t *testing.T) {
	sim, srv := testenv.UpstreamSim(t, upstreamsim.Options{Digits: 20})
	for range 3 {
		wantGrant(t, apply(t, srv, "p", 100, "job-1"), "job-1", "00000000000000000001", "00000000000000000100")
	}
	wantStats(t, sim, upstreamsim.Stats{Applies: 3, Granted: 1, Numbers: 100})
	// A new ywlsh is a new grant, after the first.
	wantGrant(t, apply(t, srv, "p", 100, "job-2"), "job-2", "00000000000000000101", "00000000000000000200")
	wantGrant(t, apply(t, srv, "p", 100, "job-1"), "job-1", "00000000000000000001", "00000000000000000100")
	wantStats(t, sim, upstreamsim.Stats{Applies: 5, Granted: 2, Numbers: 200})
}

func TestServerSameYwlshOtherRequestIsAConflict(t *testing.T) {
	sim, srv := testenv.UpstreamSim(t, upstreamsim.Options{Digits: 20})
	wantGrant(t, apply(t, srv, "p", 100, "job-1"), "job-1", "00000000000000000001", "00000000000000000100")
	tests := []struct {
		name     string
		pool     string
		quantity int64
	}{
		{"other quantity", "p", 101},
		{"other pool", "q", 100},
		{"both", "q", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, apply(t, srv, tt.pool, tt.quantity, "job-1"), http.StatusConflict)
		})
	}
	wantStats(t, sim, upstreamsim.Stats{Applies: 4, Granted: 1, Numbers: 100})
	// The conflicts changed nothing.
	wantGrant(t, apply(t, srv, "p", 100, "job-1"), "job-1", "00000000000000000001", "00000000000000000100")
	wantGrant(t, apply(t, srv, "q", 1, "job-2"), "job-2", "00000000000000000101", "00000000000000000101")
}

func TestServerFailRateGrantsNothing(t *testing.T) {
	sim, srv := testenv.UpstreamSim(t, upstreamsim.Options{Digits: 20, FailRate: 1})
	for range 3 {
		wantError(t, apply(t, srv, "p", 100, "job-1"), http.StatusServiceUnavailable)
	}
	wantStats(t, sim, upstreamsim.Stats{Applies: 3})
	if err := sim.SetRates(0, 0); err != nil {
		t.Fatal(err)
	}
	// Nothing was granted: the retry gets the first segment.
	wantGrant(t, apply(t, srv, "p", 100, "job-1"), "job-1", "00000000000000000001", "00000000000000000100")
	wantStats(t, sim, upstreamsim.Stats{Applies: 4, Granted: 1, Numbers: 100})
}

func TestServerLoseRateGrantsButAnswers503(t *testing.T) {
	sim, srv := testenv.UpstreamSim(t, upstreamsim.Options{Digits: 20, LoseRate: 1})
	wantError(t, apply(t, srv, "p", 100, "lost"), http.StatusServiceUnavailable)
	wantStats(t, sim, upstreamsim.Stats{Applies: 1, Granted: 1, Numbers: 100})
	// The retry is lost too, and grants nothing new.
	wantError(t, apply(t, srv, "p", 100, "lost"), http.StatusServiceUnavailable)
	wantStats(t, sim, upstreamsim.Stats{Applies: 2, Granted: 1, Numbers: 100})
	if err := sim.SetRates(0, 0); err != nil {
		t.Fatal(err)
	}
	wantGrant(t, apply(t, srv, "p", 100, "lost"), "lost", "00000000000000000001", "00000000000000000100")
	wantGrant(t, apply(t, srv, "p", 100, "next"), "next", "00000000000000000101", "00000000000000000200")
	wantStats(t, sim, upstreamsim.Stats{Applies: 4, Granted: 2, Numbers: 200})
}

func TestServerRatesAreDeterministicWithASeed(t *testing.T) {
	statuses := func(seed uint64) []int {
		_, srv := testenv.UpstreamSim(t, upstreamsim.Options{Digits: 20, FailRate: 0.4, LoseRate: 0.4, Seed: seed})
		var got []int
		for i := range 40 {
			got = append(got, apply(t, srv, "p", 10, fmt.Sprintf("y%d", i%10)).Status)
		}
		return got
	}
	a, b := statuses(7), statuses(7)
	if !slices.Equal(a, b) {
		t.Errorf("seed 7 answered\n%v\nthen\n%v", a, b)
	}
	if !slices.Contains(a, http.StatusOK) || !slices.Contains(a, http.StatusServiceUnavailable) {
		t.Errorf("rates 0.4 answered only %v", a)
	}
	if c := statuses(8); slices.Equal(a, c) {
		t.Errorf("seeds 7 and 8 answered the same %v", a)
	}
}

func TestServerNeverCrossesThe18DigitBoundary(t *testing.T) {
	type want struct {
		quantity   int64
		start, end string // empty: 409
	}
	nines := strings.Repeat("9", 18)
	tests := []struct {
		name   string
		digits int
		first  string
		grants []want
	}{
		{"fits to the last suffix, then the next prefix", 20, "07" + nines[:17] + "0", []want{
			{10, "07" + nines[:17] + "0", "07" + nines},
			{1, "08" + strings.Repeat("0", 18), "08" + strings.Repeat("0", 18)},
		}},
		{"would cross: jumps to the next prefix", 20, "07" + nines[:17] + "0", []want{
			{11, "08" + strings.Repeat("0", 18), "08" + strings.Repeat("0", 16) + "10"},
			{5, "08" + strings.Repeat("0", 16) + "11", "08" + strings.Repeat("0", 16) + "15"},
		}},
		{"carries across prefix digits", 22, "0199" + nines[:17] + "5", []want{
			{6, "0200" + strings.Repeat("0", 18), "0200" + strings.Repeat("0", 17) + "5"},
		}},
		{"the last prefix runs out", 20, "99" + nines[:17] + "0", []want{
			{10, "99" + nines[:17] + "0", "99" + nines},
			{1, "", ""},
		}},
		{"the last prefix cannot hold it", 20, "99" + nines[:17] + "0", []want{
			{11, "", ""},
			{10, "99" + nines[:17] + "0", "99" + nines},
		}},
		{"18 digits have no prefix", 18, nines[:17] + "0", []want{
			{11, "", ""},
			{10, nines[:17] + "0", nines},
			{1, "", ""},
		}},
		{"3 digits", 3, "995", []want{
			{5000, "", ""},
			{5, "995", "999"},
			{1, "", ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := testenv.UpstreamSim(t, upstreamsim.Options{Digits: tt.digits, First: tt.first})
			for i, w := range tt.grants {
				ywlsh := fmt.Sprintf("y%d", i)
				a := apply(t, srv, "p", w.quantity, ywlsh)
				if w.start == "" {
					wantError(t, a, http.StatusConflict)
					continue
				}
				wantGrant(t, a, ywlsh, w.start, w.end)
				if _, err := segment.ParseRange(a.Str("start"), a.Str("end"), tt.digits); err != nil {
					t.Errorf("grant %d: %v", i, err)
				}
			}
		})
	}
}

func TestServerConcurrentAppliesNeverOverlap(t *testing.T) {
	const callers = 64
	sim, srv := testenv.UpstreamSim(t, upstreamsim.Options{Digits: 20, First: "24442000000000000001", FailRate: 0.2, LoseRate: 0.2, Seed: 3})
	up, err := refill.NewHTTPUpstream(srv.URL, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	ranges := make([]segment.Range, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			// Each caller retries its own ywlsh until it has an answer, as the worker does;
			// every fourth caller shares its ywlsh with the one before it.
			ywlsh := fmt.Sprintf("y%d", i-i%4/3)
			quantity := int64(100 + i - i%4/3)
			for attempt := 0; ; attempt++ {
				g, err := up.Apply(context.Background(), "p", quantity, ywlsh)
				if err != nil {
					if attempt > 200 {
						t.Errorf("%s: still failing after %d attempts: %v", ywlsh, attempt, err)
						return
					}
					continue
				}
				r, err := segment.ParseRange(g.Start, g.End, 20)
				if err != nil {
					t.Errorf("%s: %v", ywlsh, err)
					return
				}
				if r.Size() != quantity {
					t.Errorf("%s: %s holds %d numbers, want %d", ywlsh, r, r.Size(), quantity)
				}
				ranges[i] = r
				return
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// Callers sharing a ywlsh got the same range; all others are disjoint and, as
	// nothing was asked between them, consecutive.
	distinct := map[segment.Range]bool{}
	var total int64
	for i, r := range ranges {
		if i%4 == 3 && r != ranges[i-1] {
			t.Errorf("callers %d and %d shared a ywlsh and got %s and %s", i-1, i, ranges[i-1], r)
		}
		if !distinct[r] {
			distinct[r] = true
			total += r.Size()
		}
	}
	sorted := slices.SortedFunc(maps.Keys(distinct), func(a, b segment.Range) int {
		return cmp.Or(strings.Compare(a.Prefix, b.Prefix), cmp.Compare(a.Lo, b.Lo))
	})
	for i := 1; i < len(sorted); i++ {
		if sorted[i-1].Overlaps(sorted[i]) {
			t.Errorf("%s overlaps %s", sorted[i-1], sorted[i])
		}
		if sorted[i-1].Hi+1 != sorted[i].Lo {
			t.Errorf("%s and %s are not consecutive", sorted[i-1], sorted[i])
		}
	}
	if want := callers - callers/4; len(distinct) != want {
		t.Errorf("%d distinct ranges, want %d", len(distinct), want)
	}
	st := sim.Stats()
	if st.Granted != int64(len(distinct)) || st.Numbers != total || st.Applies < callers {
		t.Errorf("Stats() = %+v, want %d granted, %d numbers, at least %d applies", st, len(distinct), total, callers)
	}
}
