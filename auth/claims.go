package auth

import (
	"math"
	"net/url"
	"slices"
	"strings"
	"time"
)

// claims are the JWT claims idflow reads. Everything else is ignored.
//
// They are decoded by parseClaims, a strict reader: names match exactly
// (encoding/json would fill Oid from "OID"), a known claim may appear only
// once, strings must be valid UTF-8, and a known claim of the wrong type
// refuses the token. The json tags describe the same mapping for json/v2,
// which the tests hold the reader to (jsonv2_test.go).
type claims struct {
	Iss               string       `json:"iss"`
	Sub               string       `json:"sub"`
	Aud               stringList   `json:"aud"`
	Exp               *numericDate `json:"exp"`
	Nbf               *numericDate `json:"nbf"`
	Iat               *numericDate `json:"iat"`
	Oid               string       `json:"oid"`
	Tid               string       `json:"tid"`
	Email             string       `json:"email"`
	PreferredUsername string       `json:"preferred_username"`
	Upn               string       `json:"upn"`
	Name              string       `json:"name"`
	Roles             stringList   `json:"roles"`
	Groups            stringList   `json:"groups"`
	ClaimNames        claimNames   `json:"_claim_names"`
	HasGroups         bool         `json:"hasgroups"`
	Scp               spaceList    `json:"scp"`
	Scope             spaceList    `json:"scope"`
	Idtyp             string       `json:"idtyp"`
	Ver               string       `json:"ver"`
	Azp               string       `json:"azp"`
	Appid             string       `json:"appid"`
	ClientID          string       `json:"client_id"`
	Nonce             string       `json:"nonce"`
	AtHash            string       `json:"at_hash"`
	CHash             string       `json:"c_hash"`
	raw               []byte       // kept only when a configured user claim is not a field above
	entraIss          bool         // EntraIssuer(Iss), set by checkIssuer
}

// stringClaim returns a string claim by name.
func (c *claims) stringClaim(name string) string {
	switch name {
	case "oid":
		return c.Oid
	case "sub":
		return c.Sub
	case "email":
		return c.Email
	case "preferred_username":
		return c.PreferredUsername
	case "upn":
		return c.Upn
	case "tid":
		return c.Tid
	}
	if c.raw == nil {
		return ""
	}
	return lookupStringClaim(c.raw, name)
}

func knownStringClaim(name string) bool {
	switch name {
	case "oid", "sub", "email", "preferred_username", "upn", "tid":
		return true
	}
	return false
}

// clientID is the OAuth client that obtained the token: client_id (RFC
// 9068), azp (Entra v2, OIDC) or appid (Entra v1).
func (c *claims) clientID() string {
	return firstNonEmpty(c.ClientID, c.Azp, c.Appid)
}

// scopes are the delegated scopes: scp (Entra) or scope (RFC 9068).
func (c *claims) scopes() []string {
	if len(c.Scp) > 0 {
		return c.Scp
	}
	return c.Scope
}

// tokenKind is what a verified token is: an access token for a user or for
// an application, or an OpenID Connect ID token (which is no access token).
type tokenKind int

const (
	kindUser tokenKind = iota + 1
	kindApp
	kindIDToken
)

// kind classifies the token by what it carries, never by its aud: SPAs
// often use one app registration for both tokens, so an ID token's aud may
// well be the API's.
func (c *claims) kind() tokenKind {
	if c.idToken() {
		return kindIDToken
	}
	if c.appOnly() {
		return kindApp
	}
	return kindUser
}

// entra reports an Entra ID token: ver 1.0/2.0, or an Entra issuer.
func (c *claims) entra() bool {
	return c.Ver == "1.0" || c.Ver == "2.0" || c.entraIss
}

// idToken reports an ID token. Entra access tokens, delegated or app-only,
// always name the client (azp in v2.0, appid in v1.0) and carry scp or
// roles/idtyp; Entra ID tokens carry none of scp, idtyp, azp, appid. For
// other issuers only unambiguous signals count: at_hash and c_hash are
// defined for ID tokens alone (OpenID Connect Core 3.1.3.6, 3.3.2.11); nonce
// is not one (some IdPs copy it into access tokens).
func (c *claims) idToken() bool {
	if c.AtHash != "" || c.CHash != "" {
		return true
	}
	return c.entra() && len(c.Scp) == 0 && c.Idtyp == "" && c.Azp == "" && c.Appid == ""
}

// appOnly reports whether the token was issued to an application acting for
// itself (docs/SECURITY.md): idtyp=app; an Entra token (ver 1.0/2.0) with neither
// idtyp nor scp; or sub equal to client_id (RFC 9068). ID tokens are sorted
// out before (kind).
func (c *claims) appOnly() bool {
	switch c.Idtyp {
	case "app":
		return true
	case "user":
		return false
	}
	if (c.Ver == "1.0" || c.Ver == "2.0") && len(c.Scp) == 0 {
		return true
	}
	return c.Sub != "" && c.ClientID != "" && c.Sub == c.ClientID
}

// EntraIssuer reports whether iss is a Microsoft Entra ID issuer, by host:
// login.microsoftonline.<tld> (v2.0: .com, .us), sts.windows.net (v1.0),
// *.ciamlogin.com (External ID), and the China cloud's
// login.partner.microsoftonline.cn and sts.chinacloudapi.cn.
func EntraIssuer(iss string) bool {
	u, err := url.Parse(iss)
	if err != nil || u.Scheme != "https" {
		return false
	}
	host := strings.ToLower(u.Hostname())
	if tld, ok := strings.CutPrefix(host, "login.microsoftonline."); ok {
		return tld != "" && !strings.Contains(tld, ".")
	}
	switch host {
	case "sts.windows.net", "login.partner.microsoftonline.cn", "sts.chinacloudapi.cn":
		return true
	}
	sub, ok := strings.CutSuffix(host, ".ciamlogin.com")
	return ok && sub != "" && !strings.Contains(sub, ".")
}

// mutableClaims can change for the same user (a rename, a new mail
// address) or be reassigned to another: never a user id.
var mutableClaims = []string{"email", "preferred_username", "upn", "name", "unique_name"}

// MutableClaim reports whether name is a claim that must not identify a user.
func MutableClaim(name string) bool {
	return slices.ContainsFunc(mutableClaims, func(m string) bool { return strings.EqualFold(m, strings.TrimSpace(name)) })
}

// groupsOverage reports Entra's signal that groups did not fit in the token.
func (c *claims) groupsOverage() bool {
	return c.HasGroups || bool(c.ClaimNames)
}

// claimNames is true when _claim_names names "groups" (Entra's overage).
type claimNames bool

// numericDate is a JWT NumericDate: seconds since the epoch, maybe fractional.
type numericDate struct{ time.Time }

func dateFromFloat(f float64) (time.Time, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
		return time.Time{}, errBadDate
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}

// stringList accepts a string or an array of strings.
type stringList []string

// spaceList accepts a space-separated string (scp, scope) or an array.
type spaceList []string

// blank reports whether s is empty or only white space: never an identity.
func blank(s string) bool { return strings.TrimSpace(s) == "" }

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
