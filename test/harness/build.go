package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// RaceEnv chooses whether the numberd binary is built with the race detector: 1
// yes, 0 no. By default it is when the test binary is (go test -race), and then a
// node whose log reports a data race fails its test.
const RaceEnv = "NUMBERD_TEST_SERVER_RACE"

var build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Main runs the tests of m and removes the numberd binary they built; call it from
// TestMain.
func Main(m *testing.M) {
	code := m.Run()
	RemoveBinary()
	os.Exit(code)
}

// RemoveBinary removes the numberd binary, if one was built. Main calls it after
// the tests; a TestMain that does not call Main calls it at its end.
func RemoveBinary() {
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
}

// Binary returns the path of the numberd binary, building it at the first call of
// the test binary. A build failure fails tb.
func Binary(tb testing.TB) string {
	tb.Helper()
	path, err := Build()
	if err != nil {
		tb.Fatalf("building numberd: %v", err)
	}
	return path
}

// Build is Binary outside a test, for a TestMain: it returns the path of the numberd
// binary, building it at the first call of the test binary, or the build's error.
func Build() (string, error) {
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "numberd-harness-")
		if build.err != nil {
			return
		}
		build.path = filepath.Join(build.dir, "numberd")
		args := []string{"build", "-o", build.path}
		race := raceBuild
		switch os.Getenv(RaceEnv) {
		case "1":
			race = true
		case "0":
			race = false
		}
		if race {
			args = append(args, "-race")
		}
		args = append(args, "github.com/numberd/numberd/cmd/numberd")
		cmd := exec.Command(goTool(), args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go %v: %v\n%s", args, err, out)
		}
	})
	return build.path, build.err
}

// goTool is the go command: the one of GOROOT, which `go test` sets for the test
// binary, or the first on PATH.
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}
