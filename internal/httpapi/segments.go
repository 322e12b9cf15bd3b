package httpapi

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/numberd/numberd"
	"github.com/numberd/numberd/api"
	"github.com/numberd/numberd/internal/segment"
)

// maxRefLength bounds a segment's external reference.
const maxRefLength = 256

// segmentHandlers serves the operations on a pool's segments and gaps.
type segmentHandlers struct {
	engine  Engine
	timeout time.Duration
}

// LoadSegment loads a segment by hand.
func (s *segmentHandlers) LoadSegment(ctx context.Context, req api.LoadSegmentRequestObject) (api.LoadSegmentResponseObject, error) {
	if err := checkPoolID(req.Pool); err != nil {
		return nil, err
	}
	if req.Body == nil {
		return nil, fmt.Errorf("%w: a JSON body is required", errInvalid)
	}
	spec := *req.Body
	// The width is the pool's, known only after the pool is found; the form of the
	// numbers is checked before authorisation, as the contract orders.
	for _, f := range []struct{ name, value string }{{"start", spec.Start}, {"end", spec.End}} {
		if _, err := segment.ParseNumber(f.value, max(len(f.value), 1)); err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
	}
	if len(spec.Start) == len(spec.End) && spec.Start > spec.End {
		return nil, fmt.Errorf("%w: start %s is above end %s", errInvalid, spec.Start, spec.End)
	}
	n := numberd.NewSegment{Source: numberd.SourceManual}
	if spec.Ref != nil {
		if len(*spec.Ref) > maxRefLength {
			return nil, fmt.Errorf("%w: ref is longer than %d bytes", errInvalid, maxRefLength)
		}
		n.Ref = *spec.Ref
	}
	if spec.ExpiresAt != nil {
		n.ExpiresAt = *spec.ExpiresAt
	}
	ctx, cancel, err := begin(ctx, s.timeout, req.Pool, true)
	if err != nil {
		return nil, err
	}
	defer cancel()
	pool, err := s.engine.Pool(ctx, req.Pool)
	if err != nil {
		return nil, err
	}
	if n.Range, err = segment.ParseRange(spec.Start, spec.End, pool.Digits); err != nil {
		return nil, err
	}
	seg, created, err := s.engine.LoadSegment(ctx, req.Pool, n)
	if err != nil {
		return nil, err
	}
	if created {
		return api.LoadSegment201JSONResponse(segmentJSON(seg)), nil
	}
	return api.LoadSegment200JSONResponse(segmentJSON(seg)), nil
}

// ListSegments answers a pool's segments in allocation order.
func (s *segmentHandlers) ListSegments(ctx context.Context, req api.ListSegmentsRequestObject) (api.ListSegmentsResponseObject, error) {
	ctx, cancel, err := begin(ctx, s.timeout, req.Pool, true)
	if err != nil {
		return nil, err
	}
	defer cancel()
	segs, err := s.engine.Segments(ctx, req.Pool)
	if err != nil {
		return nil, err
	}
	out := api.SegmentList{Segments: make([]api.Segment, len(segs))}
	for i, seg := range segs {
		out.Segments[i] = segmentJSON(seg)
	}
	return api.ListSegments200JSONResponse(out), nil
}

// RetireSegment stops using a segment.
func (s *segmentHandlers) RetireSegment(ctx context.Context, req api.RetireSegmentRequestObject) (api.RetireSegmentResponseObject, error) {
	if err := checkPoolID(req.Pool); err != nil {
		return nil, err
	}
	id, err := parseSegmentID(req.ID)
	if err != nil {
		return nil, err
	}
	ctx, cancel, err := begin(ctx, s.timeout, req.Pool, true)
	if err != nil {
		return nil, err
	}
	defer cancel()
	seg, err := s.engine.RetireSegment(ctx, req.Pool, id)
	if err != nil {
		return nil, err
	}
	return api.RetireSegment200JSONResponse(segmentJSON(seg)), nil
}

func segmentJSON(seg numberd.SegmentStatus) api.Segment {
	out := api.Segment{
		ID: strconv.FormatInt(seg.ID, 10), Start: seg.Range.Start(), End: seg.Range.End(),
		Size: strconv.FormatInt(seg.Range.Size(), 10), Used: strconv.FormatInt(seg.Used, 10),
		State: api.SegmentState(seg.State), Source: api.SegmentSource(seg.Source),
	}
	if seg.Ref != "" {
		out.Ref = new(seg.Ref)
	}
	if seg.Ywlsh != "" {
		out.Ywlsh = new(seg.Ywlsh)
	}
	if !seg.ExpiresAt.IsZero() {
		out.ExpiresAt = new(seg.ExpiresAt)
	}
	return out
}

// ListGaps answers the numbers of a pool that will never be handed out.
func (s *segmentHandlers) ListGaps(ctx context.Context, req api.ListGapsRequestObject) (api.ListGapsResponseObject, error) {
	ctx, cancel, err := begin(ctx, s.timeout, req.Pool, true)
	if err != nil {
		return nil, err
	}
	defer cancel()
	gaps, err := s.engine.Gaps(ctx, req.Pool)
	if err != nil {
		return nil, err
	}
	out := api.GapList{Gaps: make([]api.Gap, len(gaps))}
	for i, g := range gaps {
		out.Gaps[i] = api.Gap{
			Start: g.Range.Start(), End: g.Range.End(), Count: strconv.FormatInt(g.Count(), 10),
			Reason: api.GapReason(g.Reason), At: g.At,
		}
	}
	return api.ListGaps200JSONResponse(out), nil
}

// parseSegmentID parses a segment id of the path: decimal digits that fit an int64.
// An id no segment has, 0 included, is for the engine to answer 404.
func parseSegmentID(s string) (int64, error) {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%w: segment id %q must be decimal digits", errInvalid, s)
		}
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: segment id %q must be decimal digits that fit an int64", errInvalid, s)
	}
	return id, nil
}
