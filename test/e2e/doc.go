// Package e2e holds numberd's end-to-end tests. Through test/harness they build the
// real numberd binary once, start it in embedded mode on a temporary data directory
// (one server TestMain starts for most tests to share, and servers of their own for
// tests that stop, kill or restart it), and drive it over HTTP against the REST
// contract of api/openapi.yaml and api/openapi.yaml.
//
// Run them with the rest of the module:
//
//	go test -race -count=1 ./test/e2e/
//
// The package has no non-test code; this file only documents it.
package e2e
