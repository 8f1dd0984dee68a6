package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/idflow/idflow"
)

// IDTokenVerifier checks the OpenID Connect ID tokens of the browser login
// (OpenID Connect Core 3.1.3.7) on the path bearer tokens take: the same
// key set, algorithm allowlist, JWS rules and strict claims reader, clock,
// leeway and tenant allowlist. What differs is what an ID token must say:
// its issuer is the login's, its audience the login's client, and it
// answers the sign-in that carried its nonce. It is not an access token
// and builds no Principal: the session acts with its access token.
type IDTokenVerifier struct {
	v        *Verifier
	issuers  map[string]acceptedIssuer
	clientID string
}

// IDToken is a verified ID token.
type IDToken struct {
	Issuer   string
	Subject  string
	TenantID string
	Expiry   time.Time
}

// IDTokens returns the verifier of ID tokens that issuer (one of v's
// issuers; a {tenantid} template matches per allowed tenant, as for bearer
// tokens) issued to the client clientID.
func (v *Verifier) IDTokens(issuer, clientID string) (*IDTokenVerifier, error) {
	if !slices.Contains(v.cfg.Issuers, issuer) {
		return nil, fmt.Errorf("auth: the login's issuer %q is not one the bearer verifier accepts", issuer)
	}
	if strings.TrimSpace(clientID) == "" {
		return nil, errors.New("auth: ID tokens need the client id they are issued to")
	}
	return &IDTokenVerifier{v: v, issuers: acceptedIssuers([]string{issuer}, v.cfg.Tenants), clientID: clientID}, nil
}

// Verify checks raw as the ID token of the sign-in whose nonce is nonce.
// Every failure is an *idflow.Error with code EUNAUTHORIZED.
func (iv *IDTokenVerifier) Verify(ctx context.Context, raw, nonce string) (IDToken, error) {
	if len(raw) > MaxTokenBytes {
		return IDToken{}, unauthorized(errTooLarge)
	}
	if strings.Count(raw, ".") != 2 {
		return IDToken{}, unauthorized(errNotJWS) // an encrypted (5-part) ID token, or garbage
	}
	payload, err := iv.v.keys.VerifySignature(ctx, raw)
	if err != nil {
		if ctx.Err() != nil {
			return IDToken{}, idflow.WrapError(idflow.EUNAVAILABLE, "key set unavailable", err)
		}
		return IDToken{}, unauthorized(err)
	}
	c, err := parseClaims(payload)
	if err != nil {
		return IDToken{}, unauthorized(fmt.Errorf("claims: %w", err))
	}
	if err := iv.check(&c, nonce, iv.v.cfg.Now()); err != nil {
		return IDToken{}, unauthorized(err)
	}
	return IDToken{Issuer: c.Iss, Subject: c.Sub, TenantID: c.Tid, Expiry: c.Exp.Time}, nil
}

func (iv *IDTokenVerifier) check(c *claims, nonce string, now time.Time) error {
	a, ok := iv.issuers[c.Iss]
	if !ok || a.tid != "" && a.tid != c.Tid {
		return errors.New("ID token issuer not accepted")
	}
	if blank(c.Sub) {
		return errors.New("ID token without sub")
	}
	if !slices.Contains(c.Aud, iv.clientID) {
		return errors.New("ID token not issued to this client (aud)")
	}
	// 3.1.3.7 (4, 5): with other audiences too, azp must name this client.
	if (len(c.Aud) > 1 || c.Azp != "") && c.Azp != iv.clientID {
		return errors.New("ID token issued to another party (azp)")
	}
	if c.Exp == nil {
		return errors.New("ID token without exp")
	}
	leeway := iv.v.cfg.Leeway
	if !now.Before(c.Exp.Add(leeway)) {
		return ErrTokenExpired
	}
	if c.Iat == nil {
		return errors.New("ID token without iat")
	}
	if now.Add(leeway).Before(c.Iat.Time) {
		return errors.New("ID token issued in the future (iat)")
	}
	if c.Nbf != nil && now.Add(leeway).Before(c.Nbf.Time) {
		return errors.New("ID token not valid yet (nbf)")
	}
	if iv.v.multiTen || len(iv.v.tenantSet) > 0 {
		if !iv.v.tenantSet[c.Tid] {
			return errors.New("tenant not allowed")
		}
	}
	// The nonce binds the token to this browser's sign-in: a token lifted
	// from another sign-in (or replayed) carries another one.
	if nonce == "" || subtle.ConstantTimeCompare([]byte(c.Nonce), []byte(nonce)) != 1 {
		return errors.New("ID token nonce mismatch")
	}
	return nil
}
