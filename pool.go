package numberd

import "time"

// DefaultRefillThreshold is a new pool's refill threshold when none is given:
// refill when 50 numbers are left, "refill at end − 50".
const DefaultRefillThreshold = 50

// Pool is one independent number sequence and its settings.
type Pool struct {
	ID              string
	Digits          int
	RefillThreshold int64
	Upstream        string // empty: refilled only by hand
	RefillQuantity  int64  // 0: the upstream's own default
	// Epoch is the seed generation of the pool's Redis state (distributed mode).
	Epoch     int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// PoolUpdate holds the settings a PutPool call gives; nil fields keep their value
// (or take the default, on create).
type PoolUpdate struct {
	Digits          *int
	RefillThreshold *int64
	Upstream        *string // "" removes the upstream
	RefillQuantity  *int64  // 0 removes the quantity
}

// PoolStatus is a pool's settings with its live allocation state.
type PoolStatus struct {
	Pool
	Available int64 // numbers that can still be handed out
	Issued    int64 // numbers taken by allocations
	Active    *SegmentStatus
	Queued    int
	Refill    RefillStatus
}

// Refill states.
const (
	RefillIdle       = "idle"
	RefillRequesting = "requesting"
	RefillFailed     = "failed"
)

// RefillStatus is the state of a pool's download of new segments.
type RefillStatus struct {
	State     string
	Ywlsh     string
	LastError string
	UpdatedAt time.Time
	// EffectiveThreshold is the threshold that starts a refill now: the pool's
	// own, or more when its pace and the download time call for an earlier start.
	EffectiveThreshold int64
}
