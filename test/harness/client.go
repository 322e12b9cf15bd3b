package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Client talks to numberd's REST API (api/openapi.yaml) over HTTP.
type Client struct {
	HTTP *http.Client
	// Token, if set, is sent as the bearer token.
	Token string
}

// NewClient returns a client whose transport keeps up to conns idle connections
// per host, so that many concurrent callers reuse their connections.
func NewClient(conns int) *Client {
	return &Client{HTTP: &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        4 * conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     30 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Close closes the client's idle connections.
func (c *Client) Close() { c.HTTP.CloseIdleConnections() }

// Response is an HTTP answer with its body read and, if it is JSON, decoded.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	// JSON is the decoded body when it is a JSON object (numbers as json.Number).
	JSON map[string]any
}

// Code is a problem answer's "code", or "".
func (r *Response) Code() string {
	s, _ := r.JSON["code"].(string)
	return s
}

// ContentType is the answer's media type without parameters.
func (r *Response) ContentType() string {
	ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	return strings.TrimSpace(ct)
}

// Strings returns the JSON body's field as a list of strings, nil if it is none.
func (r *Response) Strings(field string) []string {
	list, ok := r.JSON[field].([]any)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(list))
	for _, v := range list {
		s, ok := v.(string)
		if !ok {
			return nil
		}
		out = append(out, s)
	}
	return out
}

func (r *Response) String() string {
	return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Body))
}

// Do sends method url with body (JSON-encoded unless nil) and reads the answer.
// err is a transport error: no answer was read.
func (c *Client) Do(ctx context.Context, method, url string, body any, header ...string) (*Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	r := &Response{Status: resp.StatusCode, Header: resp.Header, Body: data}
	if ct := r.ContentType(); ct == "application/json" || ct == "application/problem+json" {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(&r.JSON); err != nil {
			return r, fmt.Errorf("%s %s: answer %d is not a JSON object: %v: %.300s", method, url, r.Status, err, data)
		}
	}
	return r, nil
}

// Allocate asks base for count numbers of pool. On 200 it returns the numbers;
// otherwise numbers is nil and the answer tells why.
func (c *Client) Allocate(ctx context.Context, base, pool string, count int) ([]string, *Response, error) {
	r, err := c.Do(ctx, http.MethodPost, base+"/v1/pools/"+pool+"/numbers", map[string]int{"count": count})
	if err != nil {
		return nil, r, err
	}
	if r.Status != http.StatusOK {
		return nil, r, nil
	}
	nums := r.Strings("numbers")
	if len(nums) != count {
		return nil, r, fmt.Errorf("allocate %d of %s: answer holds %d numbers: %.300s", count, pool, len(nums), r.Body)
	}
	return nums, r, nil
}

// PutPool creates pool with digits digits and the default settings.
func (c *Client) PutPool(ctx context.Context, base, pool string, digits int) (*Response, error) {
	r, err := c.Do(ctx, http.MethodPut, base+"/v1/pools/"+pool, map[string]int{"digits": digits})
	if err == nil && r.Status != http.StatusCreated && r.Status != http.StatusOK {
		err = fmt.Errorf("PUT pool %s: %s", pool, r)
	}
	return r, err
}

// LoadSegment loads start..end into pool by hand.
func (c *Client) LoadSegment(ctx context.Context, base, pool, start, end string) (*Response, error) {
	r, err := c.Do(ctx, http.MethodPost, base+"/v1/pools/"+pool+"/segments", map[string]string{"start": start, "end": end})
	if err == nil && r.Status != http.StatusCreated && r.Status != http.StatusOK {
		err = fmt.Errorf("load segment %s..%s into %s: %s", start, end, pool, r)
	}
	return r, err
}

// Gap is one entry of GET /v1/pools/{pool}/gaps.
type Gap struct {
	Start  string    `json:"start"`
	End    string    `json:"end"`
	Count  string    `json:"count"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// N is the gap's count as a number.
func (g Gap) N() int64 {
	n, _ := strconv.ParseInt(g.Count, 10, 64)
	return n
}

// Gaps lists pool's gaps.
func (c *Client) Gaps(ctx context.Context, base, pool string) ([]Gap, error) {
	r, err := c.Do(ctx, http.MethodGet, base+"/v1/pools/"+pool+"/gaps", nil)
	if err != nil {
		return nil, err
	}
	if r.Status != http.StatusOK {
		return nil, fmt.Errorf("gaps of %s: %s", pool, r)
	}
	var list struct {
		Gaps []Gap `json:"gaps"`
	}
	if err := json.Unmarshal(r.Body, &list); err != nil {
		return nil, fmt.Errorf("gaps of %s: %v", pool, err)
	}
	return list.Gaps, nil
}

// Metrics is a scrape of /metrics: each sample's value by its name with labels,
// as the text format writes them, e.g. `numberd_redis_calls_total{script="allocate"}`.
type Metrics map[string]float64

// Sum adds the samples of metric name whose labels include every "key=value" of
// labels (each written as `key="value"`).
func (m Metrics) Sum(name string, labels ...string) float64 {
	var sum float64
	for k, v := range m {
		base, rest, _ := strings.Cut(k, "{")
		if base != name {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				ok = false
				break
			}
		}
		if ok {
			sum += v
		}
	}
	return sum
}

// Metrics scrapes base's /metrics.
func (c *Client) Metrics(ctx context.Context, base string) (Metrics, error) {
	r, err := c.Do(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	if r.Status != http.StatusOK {
		return nil, fmt.Errorf("metrics: %s", r)
	}
	m := Metrics{}
	s := bufio.NewScanner(bytes.NewReader(r.Body))
	s.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for s.Scan() {
		line := s.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, s.Err()
}
