package main

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"time"
)

// conn is one keep-alive HTTP/1.1 connection.
type conn struct {
	nc  net.Conn
	br  *bufio.Reader
	buf bytes.Buffer
}

func dial(host string, timeout time.Duration) (*conn, error) {
	nc, err := net.DialTimeout("tcp", host, timeout)
	if err != nil {
		return nil, err
	}
	return &conn{nc: nc, br: bufio.NewReaderSize(nc, 64<<10)}, nil
}

func (c *conn) close() {
	if c.nc != nil {
		c.nc.Close()
	}
}

// do sends req and reads the answer, whose body stays valid until the next
// call. After an error or a `Connection: close` the next call dials anew.
func (c *conn) do(host string, req []byte, timeout time.Duration) (int, []byte, error) {
	if c.nc == nil {
		nc, err := net.DialTimeout("tcp", host, timeout)
		if err != nil {
			return 0, nil, err
		}
		c.nc = nc
		c.br.Reset(nc)
	}
	status, keep, err := c.roundTrip(req, timeout)
	if err != nil || !keep {
		c.nc.Close()
		c.nc = nil
	}
	return status, c.buf.Bytes(), err
}

func (c *conn) roundTrip(req []byte, timeout time.Duration) (int, bool, error) {
	if err := c.nc.SetDeadline(time.Now().Add(timeout)); err != nil {
		return 0, false, err
	}
	if _, err := c.nc.Write(req); err != nil {
		return 0, false, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, false, err
	}
	c.buf.Reset()
	_, err = c.buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, false, err
	}
	return resp.StatusCode, !resp.Close, nil
}
