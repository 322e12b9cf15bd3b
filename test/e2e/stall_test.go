package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestStalledBody: a client that sends an allocation's header and stops in the
// middle of its body is answered 400 once the server's read timeout passes and
// its connection closed; it consumed no number.
func TestStalledBody(t *testing.T) {
	t.Parallel()
	s := shared
	pool := newPoolID("stall")
	s.createPool(t, adminToken, pool, 20)
	s.loadSegment(t, adminToken, pool, segStart, segEnd)

	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	_, err = fmt.Fprintf(conn, "POST /v1/pools/%s/numbers HTTP/1.1\r\nHost: numberd\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"count\"", pool, adminToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(40 * time.Second)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body after %v: %v", time.Since(start).Round(time.Millisecond), err)
	}
	resp.Body.Close()
	waited := time.Since(start)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a stalled body answered %d, want 400", resp.StatusCode)
	}
	if waited < 5*time.Second {
		t.Errorf("answered after %v: before the read timeout", waited)
	}
	if !resp.Close {
		t.Errorf("the answer to a stalled body keeps the connection open")
	}
	s.wantCounts(t, adminToken, pool, "1000", "0")
}
