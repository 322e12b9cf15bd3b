package harness

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// toxi is the in-process toxiproxy server every Proxy of the test binary belongs to;
// its HTTP API is not started: tests drive the proxies directly.
var toxi = sync.OnceValue(func() *toxiproxy.ApiServer {
	return toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
})

var proxySeq atomic.Int64

// Proxy is a TCP proxy on a free loopback port in front of an upstream address
// (toxiproxy, in-process). A test cuts it to make the upstream unreachable, points
// it elsewhere to fail over, or blackholes it to make the upstream hang.
type Proxy struct {
	tb testing.TB
	p  *toxiproxy.Proxy
}

// StartProxy starts a proxy to upstream (host:port). It is stopped when tb ends.
func StartProxy(tb testing.TB, upstream string) *Proxy {
	tb.Helper()
	name := fmt.Sprintf("proxy%d", proxySeq.Add(1))
	p := toxiproxy.NewProxy(toxi(), name, "127.0.0.1:0", upstream)
	if err := toxi().Collection.Add(p, true); err != nil {
		tb.Fatalf("starting a proxy to %s: %v", upstream, err)
	}
	tb.Cleanup(func() { _ = toxi().Collection.Remove(name) })
	return &Proxy{tb: tb, p: p}
}

// Addr is the proxy's listen address (host:port): dial it instead of the upstream.
func (p *Proxy) Addr() string {
	p.p.Lock()
	defer p.p.Unlock()
	return p.p.Listen
}

// Upstream is the address the proxy forwards to.
func (p *Proxy) Upstream() string {
	p.p.Lock()
	defer p.p.Unlock()
	return p.p.Upstream
}

// Cut closes the proxy's listener and every connection through it: the upstream
// becomes unreachable, and a new connection is refused.
func (p *Proxy) Cut() { p.p.Stop() }

// Restore listens again on the same address after Cut.
func (p *Proxy) Restore() {
	p.tb.Helper()
	if err := p.p.Start(); err != nil && err != toxiproxy.ErrProxyAlreadyStarted {
		p.tb.Fatalf("restoring the proxy on %s: %v", p.Addr(), err)
	}
}

// Retarget points the proxy at upstream: every connection through it is cut, and
// new ones reach upstream, on the same listen address.
func (p *Proxy) Retarget(upstream string) {
	p.tb.Helper()
	if err := p.p.Update(&toxiproxy.Proxy{Listen: p.Addr(), Upstream: upstream, Enabled: true}); err != nil {
		p.tb.Fatalf("pointing the proxy at %s: %v", upstream, err)
	}
}

// Blackhole makes the proxy swallow everything in both directions while keeping
// connections open (toxiproxy's timeout toxic with timeout 0), as a hung server or
// a dropped route does; Unblackhole ends it.
func (p *Proxy) Blackhole() {
	p.tb.Helper()
	for _, stream := range []string{"upstream", "downstream"} {
		spec := fmt.Sprintf(`{"name":"blackhole_%s","type":"timeout","stream":%q,"toxicity":1,"attributes":{"timeout":0}}`, stream, stream)
		if _, err := p.p.Toxics.AddToxicJson(strings.NewReader(spec)); err != nil {
			p.tb.Fatalf("blackholing the proxy: %v", err)
		}
	}
}

// Unblackhole removes what Blackhole added; connections held meanwhile stay open.
func (p *Proxy) Unblackhole() {
	p.tb.Helper()
	for _, stream := range []string{"upstream", "downstream"} {
		if err := p.p.Toxics.RemoveToxic(context.Background(), "blackhole_"+stream); err != nil {
			p.tb.Fatalf("removing the blackhole: %v", err)
		}
	}
}

// DropReplies makes the proxy swallow what the server sends back while passing
// on what is sent to it: a server that runs every command and whose replies are
// lost (a half-open route). KeepReplies ends it.
func (p *Proxy) DropReplies() {
	p.tb.Helper()
	spec := `{"name":"drop_replies","type":"timeout","stream":"downstream","toxicity":1,"attributes":{"timeout":0}}`
	if _, err := p.p.Toxics.AddToxicJson(strings.NewReader(spec)); err != nil {
		p.tb.Fatalf("dropping the proxy's replies: %v", err)
	}
}

// KeepReplies removes what DropReplies added.
func (p *Proxy) KeepReplies() {
	p.tb.Helper()
	if err := p.p.Toxics.RemoveToxic(context.Background(), "drop_replies"); err != nil {
		p.tb.Fatalf("removing the reply drop: %v", err)
	}
}

// Delay makes the proxy hold what the server sends back for d before passing it
// on: a slow server or link. Undelay ends it.
func (p *Proxy) Delay(d time.Duration) {
	p.tb.Helper()
	spec := fmt.Sprintf(`{"name":"delay","type":"latency","stream":"downstream","toxicity":1,"attributes":{"latency":%d}}`, d.Milliseconds())
	if _, err := p.p.Toxics.AddToxicJson(strings.NewReader(spec)); err != nil {
		p.tb.Fatalf("delaying the proxy: %v", err)
	}
}

// Undelay removes what Delay added.
func (p *Proxy) Undelay() {
	p.tb.Helper()
	if err := p.p.Toxics.RemoveToxic(context.Background(), "delay"); err != nil {
		p.tb.Fatalf("removing the delay: %v", err)
	}
}
