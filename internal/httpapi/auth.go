package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
)

// Roles a token may have.
const (
	RoleAdmin  = "admin"
	RoleClient = "client"
)

// Token is one configured bearer token.
type Token struct {
	Token string
	Role  string   // RoleAdmin or RoleClient
	Pools []string // the pools a client token may use
}

// identity is who a request speaks for.
type identity struct {
	admin bool
	pools map[string]bool
	// scope names the caller for idempotency keys: a digest of its token, so the
	// token itself is never stored.
	scope string
}

func (id *identity) mayUse(pool string) bool { return id.admin || id.pools[pool] }

type credential struct {
	digest [sha256.Size]byte
	id     *identity
}

// authenticator checks bearer tokens. With no token configured it lets every request
// through as admin: open mode, allowed only on loopback addresses.
type authenticator struct {
	creds []credential
}

var openIdentity = &identity{admin: true, scope: "open"}

func newAuthenticator(tokens []Token) (*authenticator, error) {
	a := &authenticator{}
	for i, t := range tokens {
		if t.Token == "" {
			return nil, fmt.Errorf("token %d is empty", i+1)
		}
		digest := sha256.Sum256([]byte(t.Token))
		id := &identity{scope: hex.EncodeToString(digest[:8]), pools: map[string]bool{}}
		switch t.Role {
		case RoleAdmin:
			id.admin = true
		case RoleClient:
			if len(t.Pools) == 0 {
				return nil, fmt.Errorf("client token %d names no pools", i+1)
			}
			for _, p := range t.Pools {
				if !validPoolID(p) {
					return nil, fmt.Errorf("client token %d: %q is not a pool id", i+1, p)
				}
				id.pools[p] = true
			}
		default:
			return nil, fmt.Errorf("token %d: role must be %q or %q", i+1, RoleAdmin, RoleClient)
		}
		for _, c := range a.creds {
			if c.digest == digest {
				return nil, fmt.Errorf("token %d is configured twice", i+1)
			}
		}
		a.creds = append(a.creds, credential{digest: digest, id: id})
	}
	return a, nil
}

func (a *authenticator) open() bool { return len(a.creds) == 0 }

// identify returns the identity of the request's bearer token, or nil. Every
// configured token is compared, in constant time, so timing tells nothing of which
// one nearly matched.
func (a *authenticator) identify(r *http.Request) *identity {
	if a.open() {
		return openIdentity
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return nil
	}
	digest := sha256.Sum256([]byte(strings.TrimSpace(token)))
	var found *identity
	for _, c := range a.creds {
		if subtle.ConstantTimeCompare(digest[:], c.digest[:]) == 1 {
			found = c.id
		}
	}
	return found
}

var errUnauthorizedAnswer = fmt.Errorf("%w: send Authorization: Bearer <token>", errUnauthorized)

type identityKey struct{}

// authenticate answers 401 to a request under /v1/ without a known token. It runs
// before routing, so authentication is the first check, as the contract orders.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/") && r.URL.Path != "/v1" && !strings.HasPrefix(r.URL.Path, "/debug/") {
			next.ServeHTTP(w, r)
			return
		}
		id := s.auth.identify(r)
		if id == nil {
			s.writeError(w, r, errUnauthorizedAnswer)
			return
		}
		if rc, ok := r.Context().(*requestContext); ok {
			rc.id = id
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	})
}

func identityOf(ctx context.Context) *identity {
	if id, ok := ctx.Value(identityKey{}).(*identity); ok && id != nil {
		return id
	}
	return &identity{} // unreachable behind authenticate; grants nothing
}

// authorize returns errForbidden unless the caller may act on pool; adminOnly
// endpoints need an admin token.
func authorize(ctx context.Context, pool string, adminOnly bool) error {
	return identityOf(ctx).authorize(pool, adminOnly)
}

func (id *identity) authorize(pool string, adminOnly bool) error {
	switch {
	case id.admin:
		return nil
	case adminOnly:
		return fmt.Errorf("%w: this endpoint needs an admin token", errForbidden)
	case !id.mayUse(pool):
		return fmt.Errorf("%w: the token may not use pool %s", errForbidden, pool)
	}
	return nil
}

// adminOnly answers 403 to any caller but an admin.
func (s *Server) adminOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !identityOf(r.Context()).admin {
			s.writeError(w, r, fmt.Errorf("%w: this endpoint needs an admin token", errForbidden))
			return
		}
		next.ServeHTTP(w, r)
	})
}
