//go:build race

package harness

// raceBuild: the test binary runs with the race detector, and so does numberd.
const raceBuild = true
