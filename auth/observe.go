package auth

import (
	"errors"
	"net/http"
)

// ErrTokenExpired marks a refused token whose exp has passed, so that
// callers can count expiries apart from other refusals.
var ErrTokenExpired = errors.New("expired")

// ObserveFetches makes s report every JWKS fetch attempt to f: nil when the
// key set was fetched and parsed, the reason otherwise (for monitoring;
// the error never holds a key). Call it before s is used.
func (s *RemoteKeySet) ObserveFetches(f func(err error)) *RemoteKeySet {
	s.onFetch = f
	return s
}

func (s *RemoteKeySet) observeFetch(err error) {
	if s.onFetch != nil {
		s.onFetch(err)
	}
}

func (v *Verifier) observeCache(hit bool) {
	if v.cfg.OnCacheLookup != nil {
		v.cfg.OnCacheLookup(hit)
	}
}

// ClaimsProxyIdentity reports whether r carries any identity header of a
// proxy, trusted or not (to label refusals by the credential presented).
func (a *Authenticator) ClaimsProxyIdentity(r *http.Request) bool {
	return a.proxy.claimed(r)
}
