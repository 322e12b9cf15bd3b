package refill

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/numberd/numberd/internal/upstreamapi"
)

// DefaultTimeout bounds one upstream call when NewHTTPUpstream is given a timeout
// of zero.
const DefaultTimeout = 5 * time.Second

const (
	// maxReplyBytes bounds how much of an upstream's answer is read.
	maxReplyBytes = 1 << 20
	// maxMessageRunes bounds the upstream's message quoted in an error.
	maxMessageRunes = 200
)

// HTTPUpstream is the adapter for the upstream protocol (package upstreamapi):
// POST {base}/segments with {"pool", "quantity", "ywlsh"} and a bearer token; 200
// answers {"ywlsh", "start", "end"}. It is safe for concurrent use.
type HTTPUpstream struct {
	endpoint string // {base}/segments
	token    string
	timeout  time.Duration
	client   *http.Client
}

var _ Upstream = (*HTTPUpstream)(nil)

// NewHTTPUpstream returns the adapter for the upstream at baseURL, an http or https
// URL with a host and an optional path, to which "/segments" is appended. token,
// when not empty, is sent as "Authorization: Bearer <token>"; it must be printable
// ASCII without spaces. timeout bounds each call, from the request to the last
// byte of the answer; zero means DefaultTimeout. It returns an error if baseURL,
// token or timeout is invalid; the error never holds the token.
func NewHTTPUpstream(baseURL, token string, timeout time.Duration) (*HTTPUpstream, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("refill: upstream url %q must be http(s)://host[:port][/path]", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("refill: upstream url %q must not have a query or a fragment", baseURL)
	}
	for i := 0; i < len(token); i++ {
		if token[i] <= 0x20 || token[i] > 0x7e {
			return nil, errors.New("refill: upstream token must be printable ASCII without spaces")
		}
	}
	switch {
	case timeout < 0:
		return nil, fmt.Errorf("refill: upstream timeout must not be negative, got %v", timeout)
	case timeout == 0:
		timeout = DefaultTimeout
	}
	endpoint := u.JoinPath("segments").String()
	transport := http.DefaultTransport.(*http.Transport).Clone()
	return &HTTPUpstream{
		endpoint: endpoint,
		token:    token,
		timeout:  timeout,
		client: &http.Client{
			Transport: transport,
			// A redirect is answered as it is: following one would send the
			// request somewhere nobody configured.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// Apply asks the upstream for quantity numbers for pool under ywlsh, waiting at
// most the adapter's timeout (or until ctx is done).
//
// A 4xx answer returns an error wrapping ErrRefused with the upstream's message.
// Any other failure returns an error to retry with the same ywlsh: a 5xx or any
// other unexpected status, a timeout (wrapping context.DeadlineExceeded), a
// connection error, and a 2xx whose body is not a grant or whose ywlsh is not the
// one asked (the reply is not trusted; asking again answers the same grant). Error
// texts never hold the token. The granted range is returned as answered: the
// caller validates it against the pool.
func (u *HTTPUpstream) Apply(ctx context.Context, pool string, quantity int64, ywlsh string) (Grant, error) {
	body, err := json.Marshal(upstreamapi.ApplyRequest{Pool: pool, Quantity: quantity, Ywlsh: ywlsh})
	if err != nil {
		return Grant{}, fmt.Errorf("refill: encoding the request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.endpoint, bytes.NewReader(body))
	if err != nil {
		return Grant{}, fmt.Errorf("refill: building the request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "numberd")
	if u.token != "" {
		req.Header.Set("Authorization", "Bearer "+u.token)
	}
	resp, err := u.client.Do(req)
	if err != nil {
		// A *url.Error: method, URL and cause, never a header.
		return Grant{}, fmt.Errorf("refill: calling the upstream (timeout %v): %w", u.timeout, err)
	}
	defer resp.Body.Close()
	reply, readErr := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes+1))
	status := u.clean(resp.Status)
	switch {
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return Grant{}, fmt.Errorf("%w: %s: %s", ErrRefused, status, u.message(reply))
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return Grant{}, fmt.Errorf("refill: upstream answered %s: %s", status, u.message(reply))
	case readErr != nil:
		return Grant{}, fmt.Errorf("refill: reading the upstream's %s answer (timeout %v): %w", status, u.timeout, readErr)
	case len(reply) > maxReplyBytes:
		return Grant{}, fmt.Errorf("refill: the upstream's %s answer is over %d bytes", status, maxReplyBytes)
	}
	var r upstreamapi.ApplyReply
	if err := json.Unmarshal(reply, &r); err != nil {
		return Grant{}, fmt.Errorf("refill: the upstream's %s answer is not a grant: %v", status, err)
	}
	if r.Ywlsh == nil || r.Start == nil || r.End == nil {
		return Grant{}, fmt.Errorf("refill: the upstream's %s answer is not a grant: it needs ywlsh, start and end: %s",
			status, u.message(reply))
	}
	if *r.Ywlsh != ywlsh {
		return Grant{}, fmt.Errorf("refill: the upstream answered ywlsh %q to a request for %q", u.clean(*r.Ywlsh), ywlsh)
	}
	return Grant{Ywlsh: *r.Ywlsh, Start: *r.Start, End: *r.End}, nil
}

// message extracts the upstream's message from an error answer: the "error",
// "detail", "title" or "message" member of a JSON object, or else the text,
// cleaned for a log line.
func (u *HTTPUpstream) message(body []byte) string {
	var obj map[string]any
	if json.Unmarshal(body, &obj) == nil {
		for _, key := range []string{"error", "detail", "title", "message"} {
			if s, ok := obj[key].(string); ok && strings.TrimSpace(s) != "" {
				return u.clean(s)
			}
		}
	}
	if s := u.clean(string(body)); s != "" {
		return s
	}
	return "(no message)"
}

// clean makes s fit for an error text: the token removed, whitespace and control
// characters collapsed to single spaces, trimmed, at most maxMessageRunes runes.
func (u *HTTPUpstream) clean(s string) string {
	if u.token != "" {
		s = strings.ReplaceAll(s, u.token, "[token]")
	}
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar
	}), " ")
	if r := []rune(s); len(r) > maxMessageRunes {
		s = strings.TrimSpace(string(r[:maxMessageRunes])) + "…"
	}
	return s
}
