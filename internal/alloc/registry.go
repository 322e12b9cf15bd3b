package alloc

import (
	"maps"
	"sync"
	"sync/atomic"
)

// Registry is a node's pools by id. get, once per allocation, reads an immutable
// map through an atomic pointer and takes no lock: a read lock's shared counter
// would be written by every request on every core. Adding a pool copies the map,
// which happens once per pool and process.
type Registry[P any] struct {
	mu sync.Mutex // serialises adds, and all with them
	m  atomic.Pointer[map[string]P]
}

// Init sets the pools a registry starts with.
func (r *Registry[P]) Init(m map[string]P) { r.m.Store(&m) }

func (r *Registry[P]) Get(id string) (P, bool) {
	var p P
	m := r.m.Load()
	if m == nil {
		return p, false
	}
	p, ok := (*m)[id]
	return p, ok
}

// GetOrAdd returns pool id, adding the one mk makes when there is none; mk runs
// at most once at a time, and when it fails nothing is added.
func (r *Registry[P]) GetOrAdd(id string, mk func() (P, error)) (P, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.Get(id); ok {
		return p, nil
	}
	p, err := mk()
	if err != nil {
		return p, err
	}
	m := map[string]P{}
	if old := r.m.Load(); old != nil {
		m = maps.Clone(*old)
	}
	m[id] = p
	r.m.Store(&m)
	return p, nil
}

// All returns every pool, in no order. An add that began before All is in it.
func (r *Registry[P]) All() []P {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []P
	if m := r.m.Load(); m != nil {
		out = make([]P, 0, len(*m))
		for _, p := range *m {
			out = append(out, p)
		}
	}
	return out
}
