package nemesis_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/numberd/numberd/test/harness"
)

// Settling after the faults.
const (
	// readyTimeout bounds the wait for every node's /readyz once every fault is
	// healed, and recoverTimeout the wait for every node to serve every pool:
	// service resumes by itself when the stores return.
	readyTimeout   = 30 * time.Second
	recoverTimeout = 30 * time.Second
	// settle is how long the clients keep going with no fault, and quiet how long
	// the system is left alone after they stop, before the state is read: time
	// for late answers to be resolved and recorded.
	settle = 5 * time.Second
	quiet  = 3 * time.Second
)

// TestNemesis runs the nemesis: the system under the clients and the seeded fault
// schedule for the run's duration, then healed and settled, then the checker.
func TestNemesis(t *testing.T) {
	cfg := readConfig(t)
	dir := outputDir(t, cfg)
	t.Logf("nemesis: %v; output in %s", cfg, dir)

	sys := startSystem(t)
	faults := plan(cfg.seed, cfg.duration, len(sys.nodes))
	hist := &history{}
	work := harness.NewClient(2 * (plainWorkers + keyedWorkers))
	defer work.Close()

	nem := &nemesis{sys: sys, duration: cfg.duration, seed: cfg.seed}
	info := runInfo{cfg: cfg}
	nem.start = time.Now()
	info.start = nem.start
	cl := startClients(hist, work, sys.nodes, cfg.seed)
	defer cl.Stop()
	nem.run(faults)
	var nemesisErrs []string
	for _, f := range faults {
		for _, e := range f.Errs {
			nemesisErrs = append(nemesisErrs, f.describe(sys.nodes)+": "+e)
		}
	}
	for _, e := range nem.healAll() {
		nemesisErrs = append(nemesisErrs, "heal-all: "+e)
	}

	// Every fault is healed: the nodes must be ready and serve every pool again,
	// by themselves, while the clients go on.
	notReady := sys.waitReady(readyTimeout)
	notRecovered := sys.probe(hist, recoverTimeout)
	info.healed = time.Now()
	time.Sleep(settle)
	cl.Stop()
	time.Sleep(quiet)
	states, err := sys.readState(30 * time.Second)
	if err != nil {
		t.Errorf("reading the pools' state at the end: %v", err)
	}
	info.end = time.Now()

	ops := hist.all()
	v := check(ops, states, faults)
	v.NotReady, v.NotRecovered, v.NemesisErrs = notReady, notRecovered, nemesisErrs
	if err := writeSchedule(dir, nem.start, faults, sys.nodes); err != nil {
		t.Errorf("writing the schedule: %v", err)
	}
	report, err := writeReport(dir, info, v, faults, ops)
	if err != nil {
		t.Errorf("writing the report: %v", err)
	}
	t.Logf("nemesis report (%s):\n%s", filepath.Join(dir, "report.txt"), report)
	if v.Requests[outOK] == 0 {
		t.Errorf("no request was answered 200: the run tested nothing")
	}
	if fails := v.failures(); len(fails) > 0 || states == nil || t.Failed() {
		if err := writeHistory(dir, nem.start, ops, states, sys.nodes); err != nil {
			t.Errorf("writing the history: %v", err)
		}
		for _, f := range fails {
			t.Error(f)
		}
		t.Errorf("nemesis failed (%v): history, schedule, state and node logs in %s", cfg, dir)
	}
}
