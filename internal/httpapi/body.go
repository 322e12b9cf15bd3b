package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// requestError answers a body the generated decoder could not take.
func (s *Server) requestError(w http.ResponseWriter, r *http.Request, err error) {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		s.writeError(w, r, fmt.Errorf("%w: at most %d bytes", errTooLarge, MaxBodyBytes))
		return
	}
	if errors.Is(err, io.EOF) {
		err = errors.New("a JSON body is required")
	}
	s.writeError(w, r, decodeError(err))
}

// decodeError is the answer to a body that does not decode.
func decodeError(err error) error {
	// The generated decoder prefixes every message with this.
	msg := strings.TrimPrefix(err.Error(), "can't decode JSON body: ")
	return fmt.Errorf("%w: %s", errInvalid, msg)
}

var errNotOneJSONValue = fmt.Errorf("%w: the body is not one well-formed JSON value", errInvalid)

// limitBody reads a request's body up front: more than MaxBodyBytes answers 413,
// and a body that is not exactly one JSON value answers 400, which the generated
// decoder, reading only the first value, would let through. The body's buffer is
// reused once the handler has returned.
func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, read := r.Body.(*bufferedBody); read || r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		if r.ContentLength > MaxBodyBytes {
			s.writeError(w, r, fmt.Errorf("%w: at most %d bytes", errTooLarge, MaxBodyBytes))
			return
		}
		b := bodies.Get().(*bufferedBody)
		defer b.release()
		if err := b.readFrom(r); err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				s.writeError(w, r, fmt.Errorf("%w: at most %d bytes", errTooLarge, MaxBodyBytes))
				return
			}
			s.writeError(w, r, fmt.Errorf("%w: reading the body: %v", errInvalid, err))
			return
		}
		if len(bytes.TrimSpace(b.data)) > 0 && !json.Valid(b.data) {
			s.writeError(w, r, errNotOneJSONValue)
			return
		}
		r.Body = b
		next.ServeHTTP(w, r)
	})
}

// bufferedBody is a request body read up front, its bytes kept for the
// allocation route's own decoding.
type bufferedBody struct {
	bytes.Reader
	data []byte
}

func (*bufferedBody) Close() error { return nil }

// bodies holds buffers for bodies; most are a few dozen bytes.
var bodies = sync.Pool{New: func() any { return new(bufferedBody) }}

// maxPooledBody is the largest buffer kept for reuse.
const maxPooledBody = 4 << 10

// readFrom reads r's body, failing with an *http.MaxBytesError past
// MaxBodyBytes.
func (b *bufferedBody) readFrom(r *http.Request) error {
	buf := b.data[:0]
	if r.ContentLength >= int64(cap(buf)) {
		buf = make([]byte, 0, r.ContentLength+1) // +1: the read that finds the end
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > MaxBodyBytes {
			return &http.MaxBytesError{Limit: MaxBodyBytes}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	b.data = buf
	b.Reader.Reset(buf)
	return nil
}

func (b *bufferedBody) release() {
	if cap(b.data) <= maxPooledBody {
		b.data = b.data[:0]
		b.Reader.Reset(nil)
		bodies.Put(b)
	}
}
