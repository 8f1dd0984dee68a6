package authserver

import (
	"net"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Bounds of what a client may declare.
const (
	maxRedirectURIs   = 10
	maxRedirectURILen = 2000
	maxClientNameLen  = 200
	maxClientIDLen    = 2000
	maxStateLen       = 1024
)

// refusedSchemes can never receive a code: they run script or read local
// content in the browser that follows them.
var refusedSchemes = map[string]bool{"javascript": true, "data": true, "file": true, "vbscript": true,
	"about": true, "blob": true, "filesystem": true, "ftp": true, "ws": true, "wss": true}

// validRedirectURI reports why uri may not be registered, or "" when it
// may: an absolute URI without fragment or user info; https anywhere; http
// only to a loopback host (RFC 8252 §7.3; OAuth 2.1 §1.5); or a private-use
// scheme of a native app (RFC 8252 §7.1), like cursor:// or vscode://.
func validRedirectURI(uri string) string {
	if uri == "" || len(uri) > maxRedirectURILen || !utf8.ValidString(uri) {
		return "a redirect URI must be a URL of at most 2000 bytes"
	}
	for _, c := range uri {
		if c <= ' ' || c == 0x7f || c == '\\' {
			return "a redirect URI may not contain spaces, controls or backslashes"
		}
	}
	u, err := url.Parse(uri)
	if err != nil || u.Scheme == "" {
		return "a redirect URI must be an absolute URL"
	}
	if u.Fragment != "" || strings.Contains(uri, "#") {
		return "a redirect URI may not have a fragment"
	}
	if u.User != nil {
		return "a redirect URI may not carry user info"
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme == "https":
		if u.Host == "" {
			return "an https redirect URI needs a host"
		}
	case scheme == "http":
		if !loopbackHost(u.Hostname()) {
			return "an http redirect URI must point at a loopback address (127.0.0.1, [::1] or localhost); use https otherwise"
		}
	case refusedSchemes[scheme]:
		return "the scheme " + scheme + " cannot receive an authorization code"
	default:
		if u.Opaque == "" && u.Host == "" && u.Path == "" {
			return "a redirect URI needs more than a scheme"
		}
	}
	return ""
}

// loopbackHost reports a loopback host name: an IP loopback literal, or
// localhost.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// redirectMatches reports whether the redirect_uri of a request is one a
// client registered: exactly, or — for an http loopback URI — exactly but
// for the port, which a native app picks at run time (RFC 8252 §7.3).
func redirectMatches(registered []string, uri string) bool {
	for _, reg := range registered {
		if reg == uri {
			return true
		}
	}
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "http" || !loopbackHost(u.Hostname()) {
		return false
	}
	for _, reg := range registered {
		r, err := url.Parse(reg)
		if err != nil || r.Scheme != "http" || !loopbackHost(r.Hostname()) {
			continue
		}
		if r.Hostname() == u.Hostname() && r.EscapedPath() == u.EscapedPath() && r.RawQuery == u.RawQuery &&
			r.ForceQuery == u.ForceQuery && validPort(u.Port()) {
			return true
		}
	}
	return false
}

// validPort accepts an empty port or a decimal one within 1-65535.
func validPort(p string) bool {
	if p == "" {
		return true
	}
	if len(p) > 5 {
		return false
	}
	n := 0
	for _, c := range p {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n >= 1 && n <= 65535
}

// redirectHost is what the consent page names as where the user is sent
// back: the host, or the scheme of a native app.
func redirectHost(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return uri
	}
	if u.Host != "" {
		return u.Host
	}
	return u.Scheme + ":"
}

// validClientName checks a client's self-declared name.
func validClientName(name string) bool {
	if len(name) > maxClientNameLen || !utf8.ValidString(name) {
		return false
	}
	for _, c := range name {
		if c < ' ' || c == 0x7f || (c >= 0x80 && c < 0xa0) || c == 0x2028 || c == 0x2029 || (c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069) {
			return false // controls and bidirectional overrides could disguise it
		}
	}
	return true
}
