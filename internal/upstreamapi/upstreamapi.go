// Package upstreamapi is the wire format of the upstream protocol, by which numberd
// asks a tax platform for segments: POST {base}/segments with an ApplyRequest and
// a bearer token, answered 200 with an ApplyReply, or with an error status and a
// JSON message. The refill worker's HTTP client (internal/refill) and the
// simulator (internal/upstreamsim) both speak it through these types, so the two
// cannot drift apart.
package upstreamapi

// ApplyRequest asks for Quantity numbers for Pool. Ywlsh is the caller's business
// serial number: asking again with the same Ywlsh and Quantity answers the same
// grant, so a caller that lost the answer repeats the request instead of being
// granted twice.
type ApplyRequest struct {
	Pool     string `json:"pool"`
	Quantity int64  `json:"quantity"`
	Ywlsh    string `json:"ywlsh"`
}

// ApplyReply is the grant for Ywlsh: the numbers Start..End, inclusive, as
// decimal strings of the pool's width. Its members are pointers so that a reader
// tells a member left out from one sent empty.
type ApplyReply struct {
	Ywlsh *string `json:"ywlsh"`
	Start *string `json:"start"`
	End   *string `json:"end"`
}
