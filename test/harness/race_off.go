//go:build !race

package harness

// raceBuild: the test binary runs without the race detector, and so does numberd.
const raceBuild = false
