package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// PoolSpec is the body of PUT /v1/pools/{pool}; a nil field is left out.
type PoolSpec struct {
	Digits          int     `json:"digits,omitempty"`
	RefillThreshold *int64  `json:"refill_threshold,omitempty"`
	Upstream        *string `json:"upstream,omitempty"`
	RefillQuantity  *int64  `json:"refill_quantity,omitempty"`
}

// PoolStatus is the answer of GET /v1/pools/{pool}.
type PoolStatus struct {
	Pool            string         `json:"pool"`
	Digits          int            `json:"digits"`
	RefillThreshold int64          `json:"refill_threshold"`
	Upstream        string         `json:"upstream"`
	RefillQuantity  int64          `json:"refill_quantity"`
	Available       string         `json:"available"`
	Issued          string         `json:"issued"`
	ActiveSegment   *ActiveSegment `json:"active_segment"`
	QueuedSegments  int            `json:"queued_segments"`
	Refill          RefillStatus   `json:"refill"`
}

// ActiveSegment is a pool status's active_segment.
type ActiveSegment struct {
	ID    string `json:"id"`
	Start string `json:"start"`
	End   string `json:"end"`
	Next  string `json:"next"`
}

// RefillStatus is a pool's refill object; a null ywlsh or last_error is "".
type RefillStatus struct {
	State              string    `json:"state"`
	Ywlsh              string    `json:"ywlsh"`
	LastError          string    `json:"last_error"`
	UpdatedAt          time.Time `json:"updated_at"`
	EffectiveThreshold int64     `json:"effective_threshold"`
}

// AvailableN is the status's available count as a number.
func (p PoolStatus) AvailableN() int64 {
	n, _ := strconv.ParseInt(p.Available, 10, 64)
	return n
}

// IssuedN is the status's issued count as a number.
func (p PoolStatus) IssuedN() int64 {
	n, _ := strconv.ParseInt(p.Issued, 10, 64)
	return n
}

// Segment is one entry of GET /v1/pools/{pool}/segments; a null ref, expires_at or
// ywlsh is zero.
type Segment struct {
	ID        string     `json:"id"`
	Start     string     `json:"start"`
	End       string     `json:"end"`
	Size      string     `json:"size"`
	State     string     `json:"state"`
	Source    string     `json:"source"`
	Ref       string     `json:"ref"`
	Used      string     `json:"used"`
	ExpiresAt *time.Time `json:"expires_at"`
	Ywlsh     string     `json:"ywlsh"`
}

// SizeN is the segment's size as a number.
func (s Segment) SizeN() int64 {
	n, _ := strconv.ParseInt(s.Size, 10, 64)
	return n
}

// PutPoolSpec creates or updates pool with spec.
func (c *Client) PutPoolSpec(ctx context.Context, base, pool string, spec PoolSpec) (*Response, error) {
	r, err := c.Do(ctx, http.MethodPut, base+"/v1/pools/"+pool, spec)
	if err == nil && r.Status != http.StatusCreated && r.Status != http.StatusOK {
		err = fmt.Errorf("PUT pool %s: %s", pool, r)
	}
	return r, err
}

// Pool reads pool's status.
func (c *Client) Pool(ctx context.Context, base, pool string) (PoolStatus, error) {
	var st PoolStatus
	r, err := c.Do(ctx, http.MethodGet, base+"/v1/pools/"+pool, nil)
	if err != nil {
		return st, err
	}
	if r.Status != http.StatusOK {
		return st, fmt.Errorf("GET pool %s: %s", pool, r)
	}
	if err := json.Unmarshal(r.Body, &st); err != nil {
		return st, fmt.Errorf("GET pool %s: %v: %.300s", pool, err, r.Body)
	}
	return st, nil
}

// Segments lists pool's segments in allocation order.
func (c *Client) Segments(ctx context.Context, base, pool string) ([]Segment, error) {
	r, err := c.Do(ctx, http.MethodGet, base+"/v1/pools/"+pool+"/segments", nil)
	if err != nil {
		return nil, err
	}
	if r.Status != http.StatusOK {
		return nil, fmt.Errorf("segments of %s: %s", pool, r)
	}
	var list struct {
		Segments []Segment `json:"segments"`
	}
	if err := json.Unmarshal(r.Body, &list); err != nil {
		return nil, fmt.Errorf("segments of %s: %v", pool, err)
	}
	return list.Segments, nil
}

// StartRefill sends POST /v1/pools/{pool}/refill and decodes a 202's refill
// object; the answer is returned whatever its status.
func (c *Client) StartRefill(ctx context.Context, base, pool string) (RefillStatus, *Response, error) {
	var st RefillStatus
	r, err := c.Do(ctx, http.MethodPost, base+"/v1/pools/"+pool+"/refill", nil)
	if err != nil {
		return st, r, err
	}
	if r.Status == http.StatusAccepted {
		if err := json.Unmarshal(r.Body, &st); err != nil {
			return st, r, fmt.Errorf("refill of %s: %v: %.300s", pool, err, r.Body)
		}
	}
	return st, r, nil
}
