// Package e2e holds numberd's end-to-end tests. They build the real numberd binary
// once (TestMain), start it in embedded mode on a temporary data directory, and drive
// it over HTTP against the REST contract of docs/API.md and api/openapi.yaml.
//
// Run them with the rest of the module:
//
//	go test -race -count=1 ./test/e2e/
//
// The package has no non-test code; this file only documents it.
package e2e
