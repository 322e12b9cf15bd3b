package testenv

import (
	"net/http/httptest"
	"testing"

	"github.com/numberd/numberd/internal/upstreamsim"
)

// UpstreamSim starts the upstream simulator for opts behind an httptest server,
// closed when tb ends.
func UpstreamSim(tb testing.TB, opts upstreamsim.Options) (*upstreamsim.Server, *httptest.Server) {
	tb.Helper()
	sim, err := upstreamsim.New(opts)
	if err != nil {
		tb.Fatalf("upstreamsim.New(%+v): %v", opts, err)
	}
	srv := httptest.NewServer(sim.Handler())
	tb.Cleanup(srv.Close)
	return sim, srv
}
