package nemesis_test

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// The run's length and seed come from the environment.
const (
	// durationEnv is how long the faults run, a Go duration ("30m"); unset, a
	// minute with the fixed seed, what `make test` runs.
	durationEnv = "NEMESIS"
	// seedEnv chooses the seed; unset, a run of durationEnv draws one at random
	// and prints it, so that a failure can be replayed.
	seedEnv = "NEMESIS_SEED"

	defaultDuration = time.Minute
	fixedSeed       = 1
	// overhead is what a run needs besides its faults: starting the services,
	// settling, checking, stopping. The go test -timeout must leave room for it.
	overhead = 4 * time.Minute
)

// Timing of the system under test.
const (
	// requestTimeout is the nodes' NUMBERD_REQUEST_TIMEOUT: short, so that a
	// paused Redis or a blackholed MySQL outlasts it.
	requestTimeout = time.Second
	// clientTimeout is how long a client waits for an answer before it breaks
	// off: well past requestTimeout, so that a node slow to keep its timeout
	// (one whose store hangs) still answers, and what its 503 says can be checked
	// against what it consumed, rather than the call breaking off and its numbers
	// being excused; but shorter than the longest node pauses, whose calls break
	// off.
	clientTimeout = 6 * time.Second
	// leaseMax is the nodes' --lease-max: small, so that a lease runs out during
	// a MySQL fault and a loss of Redis state skips few numbers.
	leaseMax = 200
)

// runConfig is one run's duration and seed.
type runConfig struct {
	duration time.Duration
	seed     uint64
	// random: the seed was drawn, not fixed or given.
	random bool
}

func (c runConfig) String() string {
	how := "fixed"
	if c.random {
		how = "random"
	} else if os.Getenv(seedEnv) != "" {
		how = "from " + seedEnv
	}
	return fmt.Sprintf("duration %v, seed %d (%s; replay with %s=%v %s=%d make nemesis)",
		c.duration, c.seed, how, durationEnv, c.duration, seedEnv, c.seed)
}

// readConfig reads the run's duration and seed from the environment, and fails t
// if the test's deadline (go test -timeout) leaves too little time for them.
func readConfig(t *testing.T) runConfig {
	t.Helper()
	cfg := runConfig{duration: defaultDuration, seed: fixedSeed}
	if s := os.Getenv(durationEnv); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 10*time.Second {
			t.Fatalf("%s=%q: want a duration of at least 10s, such as 30m", durationEnv, s)
		}
		cfg.duration = d
		var b [8]byte
		_, _ = rand.Read(b[:])
		cfg.seed, cfg.random = binary.LittleEndian.Uint64(b[:])>>1, true
	}
	if s := os.Getenv(seedEnv); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: want a whole number", seedEnv, s)
		}
		cfg.seed, cfg.random = seed, false
	}
	if deadline, ok := t.Deadline(); ok {
		if left := time.Until(deadline); left < cfg.duration+overhead {
			t.Fatalf("%s=%v needs go test -timeout of at least %v more than it; %v are left "+
				"(make nemesis and scripts/test.sh set it from %s)", durationEnv, cfg.duration, overhead, left.Round(time.Second), durationEnv)
		}
	}
	return cfg
}

// outputDir makes the run's directory under .tmp/nemesis/ of the repository (git
// ignores .tmp/): t.TempDir is removed when the test ends, and a failed run's
// history must outlive it.
func outputDir(t *testing.T, cfg runConfig) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, ".tmp", "nemesis", fmt.Sprintf("%s-seed%d", time.Now().Format("20060102-150405"), cfg.seed))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// repoRoot is the directory of go.mod above the working directory (go test runs
// a package's tests in its directory).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// softTB is the test as the harness sees it during the run. The harness fails its
// test with Fatalf, which may only be called from the test's goroutine and ends
// the test; the nemesis drives nodes and servers from goroutines of its own, and a
// failed step (a node that cannot start while MySQL is cut, as a real one could
// not) must be retried, not end the run. So Fatal panics with a fatalError that
// try recovers; everything else (Cleanup, TempDir, Errorf, Logf) is the test's.
type softTB struct{ testing.TB }

type fatalError struct{ msg string }

func (e fatalError) Error() string { return e.msg }

func (s softTB) Fatal(args ...any) { panic(fatalError{fmt.Sprint(args...)}) }
func (s softTB) Fatalf(format string, args ...any) {
	panic(fatalError{fmt.Sprintf(format, args...)})
}
func (s softTB) FailNow() { panic(fatalError{"FailNow"}) }

// try runs do and returns the failure a harness call reported through softTB.
func try(do func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(fatalError)
			if !ok {
				panic(r)
			}
			err = f
		}
	}()
	do()
	return nil
}
