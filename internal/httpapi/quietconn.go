package httpapi

import (
	"context"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// net/http watches a connection while its handler runs: once the request body
// has been read to its end, a goroutine reads one byte from the socket, to see
// the client go away. An allocation handler then waits on Redis, and that read
// costs a system call that finds nothing, a wake-up and three deadline changes
// per request: about a tenth of the distributed path. QuietListener lets the
// allocation route switch the watch off for its request: the one-byte read
// waits in the process instead of on the socket, until net/http ends it as it
// ends every such read, with a read deadline in the past. The socket is not
// read meanwhile, so nothing is lost; a client that goes away is seen when the
// answer is written, as it is by any handler that does not look.

// QuietListener wraps ln so that the allocation route can quiet the
// connections it accepts; serve with ConnContext as the http.Server's.
func QuietListener(ln net.Listener) net.Listener { return quietListener{ln} }

// ConnContext is the http.Server ConnContext that goes with QuietListener.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if qc, ok := c.(*quietConn); ok {
		return context.WithValue(ctx, quietConnKey{}, qc)
	}
	return ctx
}

type quietListener struct{ net.Listener }

func (l quietListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &quietConn{Conn: c, wake: make(chan error, 1)}, nil
}

type quietConnKey struct{}

// quieted is next with the watch switched off while next runs, for a handler
// that ends in bounded time whether its client stays or not. It must run before
// the body is read to its end, when net/http starts the watch; it does nothing
// on a connection QuietListener did not accept.
func quieted(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		qc, ok := r.Context().Value(quietConnKey{}).(*quietConn)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		qc.quiet.Store(true)
		defer qc.quiet.Store(false)
		next.ServeHTTP(w, r)
	})
}

type quietConn struct {
	net.Conn
	quiet atomic.Bool

	mu      sync.Mutex
	expired bool       // a read deadline in the past is set
	waiting bool       // a watch read waits on wake
	wake    chan error // ends the waiting read
}

// Read reads from the socket, except net/http's one-byte watch while quiet.
func (c *quietConn) Read(p []byte) (int, error) {
	if len(p) != 1 || !c.quiet.Load() {
		return c.Conn.Read(p)
	}
	c.mu.Lock()
	if c.expired {
		c.mu.Unlock()
		return 0, os.ErrDeadlineExceeded
	}
	c.waiting = true
	c.mu.Unlock()
	return 0, <-c.wake
}

// longAgo is a time before any deadline net/http sets to come: net/http ends
// its watch with a deadline decades in the past, and a deadline before the
// process started is past without reading the clock, which costs more than the
// rest of a deadline change on some virtual machines.
var longAgo = time.Now()

func (c *quietConn) SetReadDeadline(t time.Time) error {
	c.end(!t.IsZero() && t.Before(longAgo), os.ErrDeadlineExceeded)
	return c.Conn.SetReadDeadline(t)
}

func (c *quietConn) SetDeadline(t time.Time) error {
	c.end(!t.IsZero() && t.Before(longAgo), os.ErrDeadlineExceeded)
	return c.Conn.SetDeadline(t)
}

func (c *quietConn) Close() error {
	c.end(true, net.ErrClosed)
	return c.Conn.Close()
}

// end records whether reads have expired and, if so, ends a waiting watch read
// with err.
func (c *quietConn) end(expired bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expired = expired
	if expired && c.waiting {
		c.waiting = false
		c.wake <- err
	}
}

// CloseWrite keeps the half-close net/http uses before closing a connection
// whose request body it did not read.
func (c *quietConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
