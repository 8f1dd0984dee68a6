package authserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/singleflight"
)

// FetchConfig is how Client ID Metadata Documents are fetched. idflow
// fetches a URL that anyone can name (the client_id of an authorization
// request), so the fetch is the classic server-side request forgery
// vector; it is bounded every way.
type FetchConfig struct {
	// InsecureAllowPrivateAddresses lets a document come from a loopback,
	// private or link-local address (--dev, tests). Off, every address the
	// name resolves to is checked when the connection is made — after DNS,
	// so a name rebound to 127.0.0.1 is refused too.
	InsecureAllowPrivateAddresses bool
	// RootCAs are the trusted roots (tests); nil: the system's.
	RootCAs *x509.CertPool
	// Timeout bounds a fetch from dial to the last byte (default 5 s).
	Timeout time.Duration
	// MaxBytes bounds a document (default 64 KiB).
	MaxBytes int64
	// MaxCached bounds the documents kept (default 1,000).
	MaxCached int
}

// Cache lifetimes of a document: its max-age within these bounds; a failed
// fetch is remembered for failTTL, so that a slow or broken URL named in a
// flood of requests is fetched once a minute at most.
const (
	defaultDocTTL = 5 * time.Minute
	minDocTTL     = time.Minute
	maxDocTTL     = 24 * time.Hour
	failTTL       = time.Minute
)

// client is an OAuth client as the authorization server sees it.
type client struct {
	ID           string
	Name         string
	RedirectURIs []string
	// Document: the id is the URL of a metadata document (its host is
	// who vouches for it); else a dynamic registration, named by itself.
	Document bool
}

// documents fetches and caches Client ID Metadata Documents.
type documents struct {
	cfg    FetchConfig
	http   *http.Client
	now    func() time.Time
	flight singleflight.Group

	mu    sync.Mutex
	cache map[string]docEntry
}

type docEntry struct {
	c       client
	err     error
	expires time.Time
}

func newDocuments(cfg FetchConfig, now func() time.Time) (*documents, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 64 << 10
	}
	if cfg.MaxCached <= 0 {
		cfg.MaxCached = 1000
	}
	dialer := &net.Dialer{Timeout: cfg.Timeout}
	if !cfg.InsecureAllowPrivateAddresses {
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("client metadata fetch: %w", err)
			}
			if !publicAddr(ap.Addr()) {
				return fmt.Errorf("client metadata fetch: %w: %s", errPrivateAddress, ap.Addr())
			}
			return nil
		}
	}
	tr := &http.Transport{
		Proxy:                  nil, // a proxy would connect for us, past the address check
		DialContext:            dialer.DialContext,
		TLSClientConfig:        &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    cfg.Timeout,
		ResponseHeaderTimeout:  cfg.Timeout,
		MaxResponseHeaderBytes: 16 << 10,
		DisableCompression:     true, // the size bound is on the bytes received
		MaxIdleConns:           10,
		IdleConnTimeout:        30 * time.Second,
	}
	hc := &http.Client{Transport: tr, Timeout: cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return errRedirect }}
	return &documents{cfg: cfg, http: hc, now: now, cache: map[string]docEntry{}}, nil
}

var (
	errPrivateAddress = errors.New("the address is not public")
	errRedirect       = errors.New("client metadata documents are not fetched through redirects")
)

// nonPublic are ranges that net/netip's predicates do not cover but that
// no public service lives in.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"), // NAT64: an IPv4 address in disguise
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2002::/16"), // 6to4, likewise
	netip.MustParsePrefix("2001::/32"), // Teredo
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("100::/64"),
}

// publicAddr reports whether a is a global unicast address outside every
// private, loopback, link-local and reserved range.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || !a.IsGlobalUnicast() || a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() ||
		a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// documentURL reports why id cannot be a Client ID Metadata Document URL,
// or "": https, a host, a path other than "/", no fragment, user info or
// dot segments.
func documentURL(id string) string {
	if len(id) > maxClientIDLen {
		return "the client_id URL is too long"
	}
	u, err := url.Parse(id)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.Opaque != "" {
		return "a client_id URL must be an https URL"
	}
	if u.User != nil || u.Fragment != "" || strings.Contains(id, "#") {
		return "a client_id URL may not carry user info or a fragment"
	}
	if u.Path == "" || u.Path == "/" {
		return "a client_id URL needs a path"
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return "a client_id URL may not have dot segments"
		}
	}
	return ""
}

// get answers the client whose metadata document is at id.
func (d *documents) get(ctx context.Context, id string) (client, error) {
	if msg := documentURL(id); msg != "" {
		return client{}, oauthErr("invalid_client", msg)
	}
	now := d.now()
	d.mu.Lock()
	e, ok := d.cache[id]
	d.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.c, e.err
	}
	v, _, _ := d.flight.Do(id, func() (any, error) {
		// Detached from the request: the fetch is shared with others.
		c, ttl, err := d.fetch(context.WithoutCancel(ctx), id)
		if err != nil {
			ttl = failTTL
		}
		e := docEntry{c: c, err: err, expires: d.now().Add(ttl)}
		d.mu.Lock()
		if len(d.cache) >= d.cfg.MaxCached {
			for k, old := range d.cache {
				if !now.Before(old.expires) {
					delete(d.cache, k)
				}
			}
			if len(d.cache) >= d.cfg.MaxCached {
				clear(d.cache) // a flood of distinct URLs: start over rather than grow
			}
		}
		d.cache[id] = e
		d.mu.Unlock()
		return e, nil
	})
	e = v.(docEntry)
	return e.c, e.err
}

// clientDocument is the part of a Client ID Metadata Document idflow reads
// (RFC 7591 client metadata).
type clientDocument struct {
	ClientID                string   `json:"client_id"`
	ClientName              string   `json:"client_name"`
	RedirectURIs            []string `json:"redirect_uris"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	GrantTypes              []string `json:"grant_types"`
	ClientSecret            *string  `json:"client_secret"`
}

// fetch gets and checks the document at id, and how long to keep it.
func (d *documents) fetch(ctx context.Context, id string) (client, time.Duration, error) {
	fail := func(msg string, err error) (client, time.Duration, error) {
		if err != nil {
			msg += ": " + errMessage(err)
		}
		return client{}, 0, oauthErr("invalid_client", "the client metadata document at "+quote(id)+" "+msg)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, id, nil)
	if err != nil {
		return fail("cannot be requested", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := d.http.Do(req)
	if err != nil {
		return fail("could not be fetched", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail(fmt.Sprintf("answered HTTP %d", resp.StatusCode), nil)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return fail("is not application/json", nil)
	}
	if resp.ContentLength > d.cfg.MaxBytes {
		return fail(fmt.Sprintf("is larger than %d bytes", d.cfg.MaxBytes), nil)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, d.cfg.MaxBytes+1))
	if err != nil {
		return fail("could not be read", err)
	}
	if int64(len(body)) > d.cfg.MaxBytes {
		return fail(fmt.Sprintf("is larger than %d bytes", d.cfg.MaxBytes), nil)
	}
	c, err := parseDocument(id, body)
	if err != nil {
		return client{}, 0, err
	}
	return c, docTTL(resp.Header.Get("Cache-Control")), nil
}

// parseDocument checks a Client ID Metadata Document fetched from id.
func parseDocument(id string, body []byte) (client, error) {
	fail := func(msg string) (client, error) {
		return client{}, oauthErr("invalid_client", "the client metadata document at "+quote(id)+" "+msg)
	}
	var doc clientDocument
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&doc); err != nil || dec.More() {
		return fail("is not a JSON object of client metadata")
	}
	if doc.ClientID != id {
		return fail("names another client_id")
	}
	if doc.ClientSecret != nil || (doc.TokenEndpointAuthMethod != "" && doc.TokenEndpointAuthMethod != "none") {
		return fail("declares a confidential client; only public clients (token_endpoint_auth_method none) are supported")
	}
	if len(doc.GrantTypes) > 0 && !containsString(doc.GrantTypes, "authorization_code") {
		return fail("does not use the authorization_code grant")
	}
	if len(doc.RedirectURIs) == 0 || len(doc.RedirectURIs) > maxRedirectURIs {
		return fail(fmt.Sprintf("must list 1 to %d redirect_uris", maxRedirectURIs))
	}
	for _, uri := range doc.RedirectURIs {
		if msg := validRedirectURI(uri); msg != "" {
			return fail("lists a redirect URI that is refused: " + msg)
		}
	}
	if !validClientName(doc.ClientName) {
		return fail("has a client_name that cannot be shown")
	}
	return client{ID: id, Name: doc.ClientName, RedirectURIs: doc.RedirectURIs, Document: true}, nil
}

// docTTL is how long a document is cached: its max-age, within bounds.
func docTTL(cacheControl string) time.Duration {
	for _, part := range strings.Split(cacheControl, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		if strings.EqualFold(k, "max-age") {
			if n, err := strconv.Atoi(strings.Trim(v, `"`)); err == nil {
				return min(max(time.Duration(n)*time.Second, minDocTTL), maxDocTTL)
			}
		}
	}
	return defaultDocTTL
}

// errMessage is the innermost reason of a fetch failure, without the URL
// (which the message already names).
func errMessage(err error) string {
	switch {
	case errors.Is(err, errPrivateAddress):
		return "its address is not public"
	case errors.Is(err, errRedirect):
		return "it redirects"
	case errors.Is(err, context.DeadlineExceeded):
		return "it took too long"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return "it took too long"
		}
		return ue.Err.Error()
	}
	return err.Error()
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
