// Command dupcheck proves after a load run that numberd handed out no number
// twice. It reads the record files the generators wrote (test/load/internal/record:
// k6's log file, openloop's --record file), fails on any number received twice,
// and, given numberd's URL, cross-checks each pool against the API:
//
//   - the numbers received equal the pool's `issued` count (GET /v1/pools/{pool}):
//     fewer means answers were lost on the way (a timed-out request), more means
//     numberd counted wrong; -allow-missing accepts fewer;
//   - every number received lies in one of the pool's segments;
//   - no number received lies in a `retired` or `expired` gap: those numbers were
//     declared never handed out.
//
// Usage:
//
//	dupcheck [-url http://127.0.0.1:8080] [-token T] [-global] [-allow-missing] FILE...
//
// Exit status 0: no duplicate and every cross-check held; 1: a check failed; 2:
// bad usage, an unreadable file, or an API that did not answer.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/numberd/numberd/test/load/internal/record"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// maxShown bounds how many problems of one kind are printed.
const maxShown = 20

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dupcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	base := fs.String("url", "", "numberd's base URL; set: cross-check with the API")
	token := fs.String("token", os.Getenv("NUMBERD_TOKEN"), "bearer token for the API, an admin's (NUMBERD_TOKEN)")
	global := fs.Bool("global", false, "numbers are unique across all pools too (the load tests give each pool its own range)")
	allowMissing := fs.Bool("allow-missing", false, "accept fewer numbers received than issued (answers lost to timeouts)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: dupcheck [flags] FILE...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}

	set := NewSet()
	for _, name := range fs.Args() {
		if err := readFile(name, set); err != nil {
			fmt.Fprintln(stderr, "dupcheck:", err)
			return 2
		}
	}
	pools := set.Pools()
	var total int64
	for _, p := range pools {
		total += set.Received(p)
	}
	fmt.Fprintf(stdout, "dupcheck: %d numbers in %d runs from %d pools, %d files\n", total, set.runs, len(pools), fs.NArg())

	var problems []string
	dups, dupCount := set.Dups(*global)
	for i, d := range dups {
		if i == maxShown {
			problems = append(problems, fmt.Sprintf("… and %d more duplicate ranges", len(dups)-maxShown))
			break
		}
		problems = append(problems, "DUPLICATE "+d.String())
	}
	scope := "within each pool"
	if *global {
		scope = "within each pool and across pools"
	}
	fmt.Fprintf(stdout, "dupcheck: %d numbers received more than once (%s)\n", dupCount, scope)

	if *base != "" {
		c := &client{base: strings.TrimRight(*base, "/"), token: *token, http: &http.Client{Timeout: 30 * time.Second}}
		// Many pools: a line for each pool with a problem, a sum for the rest.
		var table bytes.Buffer
		var okPools, okReceived, okIssued int64
		fmt.Fprintf(stdout, "%-32s %14s %14s  %s\n", "pool", "received", "issued", "")
		for _, p := range pools {
			table.Reset()
			issued, msgs, err := crossCheck(context.Background(), c, set, p, *allowMissing, &table)
			if err != nil {
				fmt.Fprintln(stderr, "dupcheck:", err)
				return 2
			}
			problems = append(problems, msgs...)
			if len(pools) > 12 && len(msgs) == 0 {
				okPools++
				okReceived += set.Received(p)
				okIssued += issued
				continue
			}
			_, _ = stdout.Write(table.Bytes())
		}
		if okPools > 0 {
			fmt.Fprintf(stdout, "%-32s %14d %14d  ok\n", fmt.Sprintf("(%d pools)", okPools), okReceived, okIssued)
		}
	}

	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(stdout, "dupcheck:", p)
		}
		fmt.Fprintf(stdout, "dupcheck: FAIL (%d problems)\n", len(problems))
		return 1
	}
	fmt.Fprintln(stdout, "dupcheck: ok")
	return 0
}

func readFile(name string, set *Set) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := record.Scan(f, set.Add); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// crossCheck compares what was received from pool with what the API says.
func crossCheck(ctx context.Context, c *client, set *Set, pool string, allowMissing bool, out io.Writer) (int64, []string, error) {
	var st struct {
		Issued string `json:"issued"`
	}
	if err := c.get(ctx, "/v1/pools/"+url.PathEscape(pool), &st); err != nil {
		return 0, nil, err
	}
	issued, err := strconv.ParseInt(st.Issued, 10, 64)
	if err != nil {
		return 0, nil, fmt.Errorf("pool %s: issued %q: %w", pool, st.Issued, err)
	}
	received := set.Received(pool)
	note := "ok"
	var problems []string
	switch {
	case received > issued:
		note = "MORE RECEIVED THAN ISSUED"
		problems = append(problems, fmt.Sprintf("pool %s: %d numbers received, but numberd counts %d issued", pool, received, issued))
	case received < issued && !allowMissing:
		note = fmt.Sprintf("%d issued but never received", issued-received)
		problems = append(problems, fmt.Sprintf("pool %s: %d numbers issued but not received (lost answers? rerun with -allow-missing to accept)", pool, issued-received))
	case received < issued:
		note = fmt.Sprintf("ok (%d issued but never received, allowed)", issued-received)
	}
	fmt.Fprintf(out, "%-32s %14d %14d  %s\n", pool, received, issued, note)

	var segs struct {
		Segments []struct {
			ID    string `json:"id"`
			Start string `json:"start"`
			End   string `json:"end"`
		} `json:"segments"`
	}
	if err := c.get(ctx, "/v1/pools/"+url.PathEscape(pool)+"/segments", &segs); err != nil {
		return 0, nil, err
	}
	ivs := make([]Interval, 0, len(segs.Segments))
	for _, s := range segs.Segments {
		ivs = append(ivs, Interval{Start: s.Start, End: s.End, What: "segment " + s.ID})
	}
	outside, err := set.Outside(pool, ivs)
	if err != nil {
		return 0, nil, fmt.Errorf("pool %s: %w", pool, err)
	}
	problems = append(problems, limit(outside)...)

	var gaps struct {
		Gaps []struct {
			Start  string `json:"start"`
			End    string `json:"end"`
			Reason string `json:"reason"`
		} `json:"gaps"`
	}
	if err := c.get(ctx, "/v1/pools/"+url.PathEscape(pool)+"/gaps", &gaps); err != nil {
		return 0, nil, err
	}
	var never []Interval
	for _, g := range gaps.Gaps {
		// A recovery gap may hold numbers handed out just before a loss;
		// retired and expired numbers were never handed out.
		if g.Reason == "retired" || g.Reason == "expired" {
			never = append(never, Interval{Start: g.Start, End: g.End, What: g.Reason + " gap"})
		}
	}
	inside, err := set.Inside(pool, never)
	if err != nil {
		return 0, nil, fmt.Errorf("pool %s: %w", pool, err)
	}
	problems = append(problems, limit(inside)...)
	return issued, problems, nil
}

func limit(msgs []string) []string {
	if len(msgs) <= maxShown {
		return msgs
	}
	return append(msgs[:maxShown:maxShown], fmt.Sprintf("… and %d more", len(msgs)-maxShown))
}

type client struct {
	base, token string
	http        *http.Client
}

func (c *client) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}
