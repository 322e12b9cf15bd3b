package store_test

import (
	"github.com/numberd/numberd/internal/alloc/distributed"
	"github.com/numberd/numberd/internal/alloc/embedded"
	"github.com/numberd/numberd/internal/refill"
	"github.com/numberd/numberd/internal/store"
)

// The consumers declare what they need of each part of the store; these fail to
// compile when a change here breaks one of them.
var (
	_ embedded.Pools     = (*store.Store)(nil)
	_ embedded.Segments  = (*store.Store)(nil)
	_ embedded.Readiness = (*store.Store)(nil)
	_ embedded.Gaps      = (*store.Gaps)(nil)
	_ embedded.Records   = (*store.Records)(nil)

	_ distributed.Pools       = (*store.Store)(nil)
	_ distributed.Segments    = (*store.Store)(nil)
	_ distributed.Readiness   = (*store.Store)(nil)
	_ distributed.Generations = (*store.Generations)(nil)
	_ distributed.Gaps        = (*store.Gaps)(nil)
	_ distributed.Records     = (*store.Records)(nil)
	_ distributed.Backlog     = (*store.Backlog)(nil)

	_ refill.Pools   = (*store.Store)(nil)
	_ refill.Refills = (*store.Refills)(nil)
)
