package auth

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"time"
)

// claims are the JWT claims idflow reads. Everything else is ignored.
//
// They are decoded by parseClaims, a strict reader: names match exactly
// (encoding/json would fill Oid from "OID"), a known claim may appear only
// once, strings must be valid UTF-8, and a known claim of the wrong type
// refuses the token. The json tags and UnmarshalJSON methods describe the
// same mapping for encoding/json, which the tests use as a reference.
type claims struct {
	Iss               string          `json:"iss"`
	Sub               string          `json:"sub"`
	Aud               stringList      `json:"aud"`
	Exp               *numericDate    `json:"exp"`
	Nbf               *numericDate    `json:"nbf"`
	Iat               *numericDate    `json:"iat"`
	Oid               string          `json:"oid"`
	Tid               string          `json:"tid"`
	Email             string          `json:"email"`
	PreferredUsername string          `json:"preferred_username"`
	Upn               string          `json:"upn"`
	Name              string          `json:"name"`
	Roles             stringList      `json:"roles"`
	Groups            stringList      `json:"groups"`
	ClaimNames        claimNames      `json:"_claim_names"`
	HasGroups         bool            `json:"hasgroups"`
	Scp               spaceList       `json:"scp"`
	Scope             spaceList       `json:"scope"`
	Idtyp             string          `json:"idtyp"`
	Ver               string          `json:"ver"`
	Azp               string          `json:"azp"`
	Appid             string          `json:"appid"`
	ClientID          string          `json:"client_id"`
	Nonce             string          `json:"nonce"`
	raw               json.RawMessage // kept only when a configured user claim is not a field above
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

// appOnly reports whether the token was issued to an application acting for
// itself (DESIGN §2): idtyp=app; an Entra token (ver 1.0/2.0) with neither
// idtyp nor scp; or sub equal to client_id (RFC 9068).
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

// groupsOverage reports Entra's signal that groups did not fit in the token.
func (c *claims) groupsOverage() bool {
	return c.HasGroups || bool(c.ClaimNames)
}

// claimNames is true when _claim_names names "groups" (Entra's overage).
type claimNames bool

func (n *claimNames) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	_, ok := m["groups"]
	*n = claimNames(ok)
	return nil
}

// numericDate is a JWT NumericDate: seconds since the epoch, maybe fractional.
type numericDate struct{ time.Time }

func (d *numericDate) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	t, err := dateFromFloat(f)
	if err != nil {
		return err
	}
	d.Time = t
	return nil
}

func dateFromFloat(f float64) (time.Time, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
		return time.Time{}, errBadDate
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}

// stringList accepts a string or an array of strings.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*l = stringList{s}
		return nil
	}
	var ss []string
	if err := json.Unmarshal(b, &ss); err != nil {
		return err
	}
	*l = ss
	return nil
}

// spaceList accepts a space-separated string (scp, scope) or an array.
type spaceList []string

func (l *spaceList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*l = strings.Fields(s)
		return nil
	}
	var ss []string
	if err := json.Unmarshal(b, &ss); err != nil {
		return err
	}
	*l = ss
	return nil
}

// blank reports whether s is empty or only white space: never an identity.
func blank(s string) bool { return strings.TrimSpace(s) == "" }

// firstNonBlank is the first s that is not blank.
func firstNonBlank(ss ...string) string {
	for _, s := range ss {
		if !blank(s) {
			return s
		}
	}
	return ""
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
