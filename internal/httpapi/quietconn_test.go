package httpapi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// quietServer serves /quiet, whose handler quiets its connection, and /loud,
// whose handler does not; both read the body, tell entered, then wait for
// release or for the request's context to end, and report which on done.
type quietServer struct {
	addr    string
	entered chan string
	release chan struct{}
	done    chan error // the request context's error when the handler ended
}

func startQuietServer(t *testing.T) *quietServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &quietServer{addr: ln.Addr().String(), entered: make(chan string, 8), release: make(chan struct{}, 8), done: make(chan error, 8)}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.entered <- r.URL.Path
		select {
		case <-s.release:
		case <-r.Context().Done():
		case <-time.After(300 * time.Millisecond):
		}
		s.done <- r.Context().Err()
		fmt.Fprintf(w, "%s %s", r.URL.Path, body)
	})
	mux := http.NewServeMux()
	mux.Handle("/quiet", quieted(handler))
	mux.Handle("/loud", handler)
	srv := &http.Server{ConnContext: ConnContext, Handler: mux}
	go func() { _ = srv.Serve(QuietListener(ln)) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

func post(path, body string) string {
	return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", path, len(body), body)
}

func (s *quietServer) dial(t *testing.T) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func readAnswer(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, b)
}

// A client that goes away is seen at once by a loud handler, through net/http's
// watch; a quiet handler is not told and finishes its work.
func TestQuietRequestIsNotWatched(t *testing.T) {
	s := startQuietServer(t)
	for _, tc := range []struct {
		path    string
		wantErr error
	}{{"/loud", context.Canceled}, {"/quiet", nil}} {
		c, _ := s.dial(t)
		if _, err := io.WriteString(c, post(tc.path, `{"count":1}`)); err != nil {
			t.Fatal(err)
		}
		<-s.entered
		_ = c.Close()
		if got := <-s.done; !errors.Is(got, tc.wantErr) {
			t.Errorf("%s: context after the client went away = %v, want %v", tc.path, got, tc.wantErr)
		}
	}
}

// Requests sent ahead on one connection are all answered, in order, whether
// the ones before them were quiet or not: the quiet watch reads nothing.
func TestQuietConnectionKeepsPipelinedRequests(t *testing.T) {
	s := startQuietServer(t)
	c, br := s.dial(t)
	paths := []string{"/quiet", "/quiet", "/loud", "/quiet", "/loud", "/loud", "/quiet"}
	var all strings.Builder
	for i, p := range paths {
		all.WriteString(post(p, fmt.Sprintf("body-%d", i)))
	}
	if _, err := io.WriteString(c, all.String()); err != nil {
		t.Fatal(err)
	}
	for i, p := range paths {
		if got := <-s.entered; got != p {
			t.Fatalf("request %d entered %s, want %s", i, got, p)
		}
		s.release <- struct{}{}
		if err := <-s.done; err != nil {
			t.Errorf("request %d (%s): context ended early: %v", i, p, err)
		}
		if got, want := readAnswer(t, br), fmt.Sprintf("200 %s body-%d", p, i); got != want {
			t.Errorf("answer %d = %q, want %q", i, got, want)
		}
	}
}

// After a quiet request, the next loud one on the same connection is watched.
func TestQuietEndsWithItsRequest(t *testing.T) {
	s := startQuietServer(t)
	c, br := s.dial(t)
	if _, err := io.WriteString(c, post("/quiet", "a")); err != nil {
		t.Fatal(err)
	}
	<-s.entered
	s.release <- struct{}{}
	<-s.done
	if got := readAnswer(t, br); got != "200 /quiet a" {
		t.Fatalf("quiet answer = %q", got)
	}
	if _, err := io.WriteString(c, post("/loud", "b")); err != nil {
		t.Fatal(err)
	}
	<-s.entered
	_ = c.Close()
	if got := <-s.done; !errors.Is(got, context.Canceled) {
		t.Errorf("loud request after a quiet one: context = %v, want canceled when the client goes away", got)
	}
}

func TestQuietConnWatchRead(t *testing.T) {
	newConn := func(t *testing.T) *quietConn {
		a, b := net.Pipe()
		t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
		qc := &quietConn{Conn: a, wake: make(chan error, 1)}
		qc.quiet.Store(true)
		return qc
	}
	read := func(qc *quietConn) <-chan error {
		ch := make(chan error, 1)
		go func() {
			_, err := qc.Read(make([]byte, 1))
			ch <- err
		}()
		return ch
	}
	waiting := func(qc *quietConn) bool {
		qc.mu.Lock()
		defer qc.mu.Unlock()
		return qc.waiting
	}

	t.Run("ended by a past deadline", func(t *testing.T) {
		qc := newConn(t)
		got := read(qc)
		for !waiting(qc) {
			time.Sleep(time.Millisecond)
		}
		if err := qc.SetReadDeadline(time.Time{}); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-got:
			t.Fatalf("a zero deadline ended the watch: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		_ = qc.SetReadDeadline(time.Unix(1, 0))
		if err := <-got; !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("watch read = %v, want a deadline error", err)
		}
		var ne net.Error
		if err := os.ErrDeadlineExceeded; !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("%v is not a net.Error timeout, which net/http expects", err)
		}
	})
	t.Run("deadline set before the read", func(t *testing.T) {
		qc := newConn(t)
		_ = qc.SetReadDeadline(time.Unix(1, 0))
		if err := <-read(qc); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("watch read after the deadline = %v, want a deadline error", err)
		}
		_ = qc.SetReadDeadline(time.Time{})
		got := read(qc)
		for !waiting(qc) {
			time.Sleep(time.Millisecond)
		}
		_ = qc.SetDeadline(time.Unix(1, 0))
		if err := <-got; !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("watch read ended by SetDeadline = %v", err)
		}
	})
	t.Run("ended by close", func(t *testing.T) {
		qc := newConn(t)
		got := read(qc)
		for !waiting(qc) {
			time.Sleep(time.Millisecond)
		}
		_ = qc.Close()
		if err := <-got; !errors.Is(err, net.ErrClosed) {
			t.Errorf("watch read after Close = %v, want net.ErrClosed", err)
		}
	})
	t.Run("loud reads go to the socket", func(t *testing.T) {
		a, b := net.Pipe()
		t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
		qc := &quietConn{Conn: a, wake: make(chan error, 1)}
		go func() { _, _ = b.Write([]byte("xy")) }()
		buf := make([]byte, 1)
		if n, err := qc.Read(buf); n != 1 || err != nil || buf[0] != 'x' {
			t.Errorf("loud one-byte read = %d %q %v", n, buf[:n], err)
		}
		qc.quiet.Store(true)
		buf = make([]byte, 4)
		if n, err := qc.Read(buf); n != 1 || err != nil || buf[0] != 'y' {
			t.Errorf("quiet read of a larger buffer = %d %q %v, want the socket's byte", n, buf[:n], err)
		}
	})
}
