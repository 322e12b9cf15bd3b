package store_test

import (
	"github.com/numberd/numberd/internal/alloc/distributed"
	"github.com/numberd/numberd/internal/alloc/embedded"
	"github.com/numberd/numberd/internal/store"
)

// The consumers declare what they need of the store; these fail to compile when a
// change here breaks one of them.
var (
	_ embedded.Store    = (*store.Store)(nil)
	_ distributed.Store = (*store.Store)(nil)
)
