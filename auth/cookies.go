package auth

import (
	"net"
	"net/url"
)

// Cookies names idflow's browser cookies for one public URL. It is chosen
// once (CookiesFor) and given both to the login, which sets the cookies,
// and to the Authenticator, which reads the session cookie.
type Cookies struct {
	Session string // the browser session
	Login   string // a sign-in in progress: state, nonce, PKCE verifier
	Secure  bool   // set with the Secure attribute
}

// hostPrefix makes a cookie host-only: the browser accepts a __Host- cookie
// only if it is Secure, has Path=/ and no Domain, so a sibling origin on the
// same site (another subdomain) can neither plant nor overwrite it.
const hostPrefix = "__Host-"

// CookiesFor answers the cookies of the public URL publicURL. Only a
// plain-http loopback URL (localhost, 127.0.0.0/8, ::1) keeps the bare
// names and no Secure attribute; any other URL — https, or any other host —
// gets __Host- names, Secure. A URL that does not parse gets the strict
// names too.
func CookiesFor(publicURL string) Cookies {
	if u, err := url.Parse(publicURL); err == nil && u.Scheme == "http" && loopbackName(u.Hostname()) {
		return Cookies{Session: SessionCookie, Login: LoginCookie}
	}
	return Cookies{Session: hostPrefix + SessionCookie, Login: hostPrefix + LoginCookie, Secure: true}
}

// LoginCookie is the bare name of the pending-login cookie.
const LoginCookie = "idflow_login"

func loopbackName(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
