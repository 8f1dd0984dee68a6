package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"slices"
	"strings"

	"github.com/idflow/idflow"
)

// PersonalTokens resolves personal access tokens (implemented by the
// service over the store). nil when they are off.
type PersonalTokens interface {
	// LookupPersonalToken answers the live token whose secret hashes to
	// hash (hex SHA-256); an unknown, expired or revoked one is ENOTFOUND.
	LookupPersonalToken(ctx context.Context, hash string) (idflow.TokenGrant, error)
	// PersonalTokenUsed is told, after the Principal was built, that g
	// authenticated a request as p (last-used time, audit of use).
	PersonalTokenUsed(ctx context.Context, p idflow.Principal, g idflow.TokenGrant)
}

// personalTokenLen is the length of "idf_pat_" + 256 bits in unpadded
// base64url.
var personalTokenLen = len(idflow.TokenSecretPrefix) + base64.RawURLEncoding.EncodedLen(32)

// IsPersonalToken reports whether raw has the form of a personal access
// token; such a bearer is never verified as a JWT.
func IsPersonalToken(raw string) bool { return strings.HasPrefix(raw, idflow.TokenSecretPrefix) }

// PersonalTokenHash is the hash a personal access token is stored and
// looked up under: hex SHA-256, which is right for a 256-bit random
// secret (no stretching needed: it cannot be guessed).
func PersonalTokenHash(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(sum[:])
}

// NewPersonalToken mints a token and its hash.
func NewPersonalToken() (raw, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	raw = idflow.TokenSecretPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return raw, PersonalTokenHash(raw), nil
}

// verifyPersonalToken builds the Principal of a personal access token: its
// owner's Snapshot from when it was made, with the token's scopes and
// expiry, kind user, method personal_token. Refusals never quote the token.
func (a *Authenticator) verifyPersonalToken(ctx context.Context, raw string) (idflow.Principal, error) {
	if a.pats == nil {
		return idflow.Principal{}, idflow.Errorf(idflow.EUNAUTHORIZED, "personal access tokens are not accepted here")
	}
	if len(raw) != personalTokenLen {
		return idflow.Principal{}, idflow.Errorf(idflow.EUNAUTHORIZED, "malformed personal access token")
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(raw[len(idflow.TokenSecretPrefix):]); err != nil {
		return idflow.Principal{}, idflow.Errorf(idflow.EUNAUTHORIZED, "malformed personal access token")
	}
	hash := PersonalTokenHash(raw)
	g, err := a.pats.LookupPersonalToken(ctx, hash)
	if idflow.ErrorCode(err) == idflow.ENOTFOUND {
		return idflow.Principal{}, idflow.Errorf(idflow.EUNAUTHORIZED, "personal access token unknown, expired or revoked")
	}
	if err != nil {
		return idflow.Principal{}, err
	}
	// The store found the row by this hash; compare again in constant time
	// so that no code path ever trusts a row it did not match.
	if subtle.ConstantTimeCompare([]byte(g.Hash), []byte(hash)) != 1 || !a.now().Before(g.Token.ExpiresAt) {
		return idflow.Principal{}, idflow.Errorf(idflow.EUNAUTHORIZED, "personal access token unknown, expired or revoked")
	}
	s := g.Owner
	if blank(s.UserID) || s.UserID != g.Token.UserID {
		return idflow.Principal{}, idflow.Errorf(idflow.EUNAUTHORIZED, "personal access token has no user")
	}
	if err := checkUserID(s.UserID); err != nil {
		return idflow.Principal{}, userIDError("the personal access token", err)
	}
	p := idflow.Principal{
		UserID:     s.UserID,
		TenantID:   s.TenantID,
		Email:      s.Email,
		Name:       s.Name,
		Roles:      nonNil(slices.Clone(s.Roles)),
		Groups:     nonNil(slices.Clone(s.Groups)),
		Scopes:     nonNil(slices.Clone(g.Token.Scopes)),
		Issuer:     s.Issuer,
		Kind:       idflow.KindUser,
		AuthMethod: idflow.AuthPersonalToken,
		ExpiresAt:  g.Token.ExpiresAt,
	}
	a.pats.PersonalTokenUsed(ctx, p, g)
	return p, nil
}
