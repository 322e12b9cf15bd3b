package nemesis_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/numberd/numberd/test/harness"
)

// runInfo is what the report says of the run besides the verdict.
type runInfo struct {
	cfg    runConfig
	start  time.Time // the faults' start
	healed time.Time // every fault healed
	end    time.Time // the checker read the state
}

// writeReport writes report.txt and returns its text.
func writeReport(dir string, info runInfo, v *verdict, faults []*fault, ops []op) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "numberd nemesis: %v\n", info.cfg)
	fmt.Fprintf(&b, "%d nodes, --lease-max %d, NUMBERD_REQUEST_TIMEOUT=%v, client timeout %v; %d plain and %d keyed clients (%.0f%% of keyed requests replay a key)\n",
		nodeCount, leaseMax, requestTimeout, clientTimeout, plainWorkers, keyedWorkers, 100*replayShare)
	for _, p := range testPools {
		fmt.Fprintf(&b, "pool %s: segments", p.name)
		for _, s := range p.segments {
			fmt.Fprintf(&b, " %s..%s", p.number(s.Lo), p.number(s.Hi))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "faults for %v from %s; every fault healed and every pool served again at +%v; state read at +%v\n\n",
		info.cfg.duration, info.start.Format("15:04:05"), info.healed.Sub(info.start).Round(100*time.Millisecond),
		info.end.Sub(info.start).Round(100*time.Millisecond))

	var inDoubt int64
	for _, n := range v.InDoubt {
		inDoubt += n
	}
	fmt.Fprintf(&b, "requests: %d: ok %d, 503 unavailable %d, refused %d, broke off %d (asking for %d numbers), unexpected %d, malformed %d\n",
		len(ops), v.Requests[outOK], v.Requests[outUnavailable], v.Requests[outRefused], v.Requests[outBrokeOff], inDoubt,
		v.Requests[outUnexpected], v.Requests[outMalformed])
	fmt.Fprintf(&b, "numbers issued: %d in %d deliveries; %d replays of a key\n", v.Issued, v.Deliveries, v.Replays)
	fmt.Fprintf(&b, "gaps (numbers by reason): %v; numbers in two gaps: %d\n\n", v.Gaps, v.GapOverlap)

	injected, skipped := map[kind]int{}, 0
	for _, f := range faults {
		if f.Skipped {
			skipped++
		} else {
			injected[f.Kind]++
		}
	}
	b.WriteString("faults injected by kind:\n")
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, k := range append(slices.Clone(nodeKinds), storeKinds...) {
		fmt.Fprintf(w, "  %s\t%d\n", k, injected[k])
	}
	fmt.Fprintf(w, "  (planned, not reached in time)\t%d\n", skipped)
	_ = w.Flush()

	b.WriteString("\nchecks:\n")
	w = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "  %s\t%d\n", checkDuplicates, v.Duplicates)
	fmt.Fprintf(w, "  %s\t%d\n", checkOutside, v.Outside)
	var unacc int64
	var perPool []string
	for _, p := range slices.Sorted(maps.Keys(v.Unaccounted)) {
		unacc += v.Unaccounted[p]
		perPool = append(perPool, fmt.Sprintf("%s %d of %d allowed", p, v.Unaccounted[p], v.InDoubt[p]))
	}
	fmt.Fprintf(w, "  %s\t%d (%s)\n", checkUnaccounted, unacc, strings.Join(perPool, ", "))
	fmt.Fprintf(w, "  %s\t%d\n", checkUnexplained, v.Unexplained)
	fmt.Fprintf(w, "  %s\t%d\n", checkAbove, v.AboveCursor)
	fmt.Fprintf(w, "  %s\t%d\n", checkAbandoned, v.InAbandoned)
	fmt.Fprintf(w, "  %s\t%d of %d\n", checkReplays, v.ReplaysDiffered, v.Replays)
	fmt.Fprintf(w, "  %s\t%d unexpected %v, %d malformed\n", checkAnswers, v.Requests[outUnexpected], v.Unexpected, v.Malformed)
	fmt.Fprintf(w, "  nodes ready after healing\t%s\n", okOr(v.NotReady))
	fmt.Fprintf(w, "  pools served after healing\t%s\n", okOr(v.NotRecovered))
	fmt.Fprintf(w, "  nemesis steps\t%s\n", okOr(v.NemesisErrs))
	_ = w.Flush()

	if len(v.ByKind) > 0 {
		b.WriteString("\nviolations by the kinds of the faults around them: (a) numbers, each blamed on the latest fault of each lane\n" +
			"before its second answer; (c) numbers, blamed on every fault in force while they were taken; (d) keys, blamed on\n" +
			"every fault in force between the key's last good answer and its first differing one:\n")
		for _, c := range slices.Sorted(maps.Keys(v.ByKind)) {
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(v.ByKind[c])) {
				parts = append(parts, fmt.Sprintf("%s %d", k, v.ByKind[c][k]))
			}
			fmt.Fprintf(&b, "  %s: %s\n", c, strings.Join(parts, ", "))
		}
	}
	if len(v.Samples) > 0 {
		b.WriteString("\nexamples:\n")
		for _, c := range slices.Sorted(maps.Keys(v.Samples)) {
			for _, s := range v.Samples[c] {
				fmt.Fprintf(&b, "  %s: %s\n", c, s)
			}
		}
	}
	if fails := v.failures(); len(fails) > 0 {
		b.WriteString("\nresult: FAIL\n")
		for _, f := range fails {
			fmt.Fprintf(&b, "  %s\n", f)
		}
	} else {
		b.WriteString("\nresult: PASS\n")
	}
	text := b.String()
	return text, os.WriteFile(filepath.Join(dir, "report.txt"), []byte(text), 0o644)
}

func okOr(list []string) string {
	if len(list) == 0 {
		return "ok"
	}
	return fmt.Sprint(list)
}

// writeSchedule writes schedule.txt: every fault as planned and as it happened,
// times in seconds from the faults' start.
func writeSchedule(dir string, start time.Time, faults []*fault, nodes []*harness.Node) error {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "seq\tlane\tplanned\tstarted\thealed\tfault\tnotes\terrors")
	at := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return fmt.Sprintf("%.2f", t.Sub(start).Seconds())
	}
	for _, f := range faults {
		started := at(f.Started)
		if f.Skipped {
			started = "skipped"
		}
		fmt.Fprintf(w, "%d\t%s\t%.2f\t%s\t%s\t%s\t%s\t%s\n", f.Seq, f.Lane, f.At.Seconds(), started, at(f.Healed),
			f.describe(nodes), strings.Join(f.Notes, "; "), strings.Join(f.Errs, "; "))
	}
	_ = w.Flush()
	return os.WriteFile(filepath.Join(dir, "schedule.txt"), []byte(b.String()), 0o644)
}

// writeHistory writes history.jsonl, every request in the order they ended,
// with its numbers; state.json, what numberd said of the pools at the end; and
// each node's log over all its runs.
func writeHistory(dir string, start time.Time, ops []op, states []poolState, nodes []*harness.Node) error {
	f, err := os.Create(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	enc := json.NewEncoder(bw)
	for i := range ops {
		o := &ops[i]
		rec := struct {
			*op
			SentS     float64  `json:"sent_s"`
			AnsweredS float64  `json:"answered_s"`
			Numbers   []string `json:"numbers,omitempty"`
		}{o, o.Sent.Sub(start).Seconds(), o.Answered.Sub(start).Seconds(), poolByName(o.Pool).format(o.Runs)}
		if err := enc.Encode(rec); err != nil {
			_ = f.Close()
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	state, err := json.MarshalIndent(states, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "state.json"), state, 0o644); err != nil {
		return err
	}
	for _, n := range nodes {
		if err := os.WriteFile(filepath.Join(dir, n.Name()+".log"), []byte(strings.Join(n.Logs(), "\n")+"\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}
