package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/idflow/idflow"
)

// DefaultProxyUserHeader is the plain identity header a trusted proxy sets.
const DefaultProxyUserHeader = "X-Authenticated-User"

// ProxyConfig configures trusted-proxy authentication.
type ProxyConfig struct {
	// Trusted are the peers (the TCP peer, never X-Forwarded-For) whose
	// identity headers count.
	Trusted []netip.Prefix
	// UserHeader carries the user id (default X-Authenticated-User). Its
	// companions share its prefix: X-Authenticated-Email, -Name, -Tenant,
	// -Roles, -Groups.
	UserHeader string
	// AssertionHeader, when set, carries a signed JWT verified by
	// Assertions; it is preferred over the plain header.
	AssertionHeader string
	Assertions      *Verifier
}

// proxyAuth reads identity from a trusted proxy's headers.
type proxyAuth struct {
	trusted   []netip.Prefix
	user      string
	prefix    string
	assertion string
	verifier  *Verifier
	headers   []string // every identity header, computed once
}

func newProxyAuth(cfg ProxyConfig) *proxyAuth {
	user := cfg.UserHeader
	if user == "" {
		user = DefaultProxyUserHeader
	}
	user = http.CanonicalHeaderKey(user)
	prefix := strings.TrimSuffix(user, "-User")
	if prefix == user {
		prefix = ""
	}
	var assertion string
	if cfg.AssertionHeader != "" {
		assertion = http.CanonicalHeaderKey(cfg.AssertionHeader)
	}
	a := &proxyAuth{trusted: cfg.Trusted, user: user, prefix: prefix, assertion: assertion, verifier: cfg.Assertions}
	a.headers = a.identityHeaders()
	return a
}

// companionSuffixes name the headers that accompany the user header.
var companionSuffixes = []string{"-Email", "-Name", "-Tenant", "-Roles", "-Groups"}

// identityHeaders lists the request headers that claim an identity.
func (a *proxyAuth) identityHeaders() []string {
	hs := []string{a.user}
	if a.prefix != "" {
		for _, s := range companionSuffixes {
			hs = append(hs, a.prefix+s)
		}
	}
	if a.assertion != "" {
		hs = append(hs, a.assertion)
	}
	return hs
}

// claimed reports whether r carries any identity header.
func (a *proxyAuth) claimed(r *http.Request) bool {
	for _, h := range a.headers {
		if _, ok := r.Header[h]; ok {
			return true
		}
	}
	return false
}

// trustedPeer reports whether the TCP peer of r is a trusted proxy.
func (a *proxyAuth) trustedPeer(r *http.Request) bool {
	ip, ok := PeerIP(r)
	if !ok {
		return false
	}
	for _, p := range a.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// authenticate builds a Principal from a trusted peer's headers. Every
// identity header must appear at most once: a repeated one means a client
// sent its own and the proxy appended rather than replaced it, and which of
// the two a reader takes is an accident.
func (a *proxyAuth) authenticate(ctx context.Context, r *http.Request) (idflow.Principal, error) {
	if a.assertion != "" {
		if vals := r.Header.Values(a.assertion); len(vals) > 0 {
			if err := single(a.assertion, vals); err != nil {
				return idflow.Principal{}, err
			}
			if a.verifier == nil {
				return idflow.Principal{}, unauthorized(errors.New("assertion header without verifier"))
			}
			tok, err := a.verifier.Verify(ctx, vals[0])
			if err != nil {
				return idflow.Principal{}, err
			}
			return tok.Principal, nil
		}
	}
	vals := r.Header.Values(a.user)
	if err := single(a.user, vals); err != nil {
		return idflow.Principal{}, err
	}
	if err := checkUserID(vals[0]); err != nil {
		return idflow.Principal{}, userIDError("the "+a.user+" header", err)
	}
	companion := map[string]string{}
	if a.prefix != "" {
		for _, suffix := range companionSuffixes {
			vs := r.Header.Values(a.prefix + suffix)
			if len(vs) > 1 {
				return idflow.Principal{}, repeated(a.prefix + suffix)
			}
			if len(vs) == 1 {
				companion[suffix] = vs[0]
			}
		}
	}
	roles, err := ParseList(companion["-Roles"])
	if err != nil {
		return idflow.Principal{}, idflow.WrapError(idflow.EUNAUTHORIZED, "the "+a.prefix+"-Roles header is not a list of names", err)
	}
	groups, err := ParseList(companion["-Groups"])
	if err != nil {
		return idflow.Principal{}, idflow.WrapError(idflow.EUNAUTHORIZED, "the "+a.prefix+"-Groups header is not a list of names", err)
	}
	return idflow.Principal{
		UserID:     vals[0],
		TenantID:   companion["-Tenant"],
		Email:      companion["-Email"],
		Name:       companion["-Name"],
		Roles:      roles,
		Groups:     groups,
		Scopes:     []string{},
		Kind:       idflow.KindUser,
		AuthMethod: idflow.AuthProxyHeader,
		// A plain header is valid for this one request only.
		ExpiresAt: time.Now(),
	}, nil
}

// errRepeatedHeader: an identity header sent more than once.
var errRepeatedHeader = errors.New("identity header repeated")

// repeated refuses a request that carries identity header name twice.
func repeated(name string) error {
	return idflow.WrapError(idflow.EUNAUTHORIZED, "the "+name+" header appears more than once; a proxy must replace a client's identity headers, not append to them", errRepeatedHeader)
}

// single accepts exactly one non-empty value of header name.
func single(name string, vals []string) error {
	switch {
	case len(vals) > 1:
		return repeated(name)
	case len(vals) == 0:
		return idflow.Errorf(idflow.EUNAUTHORIZED, "the %s header is missing", name)
	case vals[0] == "":
		return idflow.Errorf(idflow.EUNAUTHORIZED, "the %s header is empty", name)
	}
	return nil
}

// PeerIP is the TCP peer of r. Forwarding headers are never consulted.
func PeerIP(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

// ParsePrefixes parses comma-separated CIDRs or bare addresses.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			ip, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", f, err)
			}
			out = append(out, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", f, err)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			// ::ffff:10.0.0.0/104 means 10.0.0.0/8; peers are compared unmapped.
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if p.Bits() < 8 {
			return nil, fmt.Errorf("trusted proxy %q: a prefix this wide would trust almost every peer's identity headers", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
