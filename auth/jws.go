package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// compactJWS is a parsed compact JWS (RFC 7515 §7.1). Only the header
// parameters idflow acts on are kept: alg and kid. jwk, jku, x5u, x5c and
// every other key-bearing parameter are skipped unread, so a token can
// never bring its own key.
type compactJWS struct {
	alg     string
	kid     string
	signed  string // BASE64URL(header) "." BASE64URL(payload), exactly as received
	payload []byte
	sig     []byte
}

// b64url decodes the three parts: base64url alphabet only, no padding, no
// non-zero trailing bits.
var b64url = base64.RawURLEncoding.Strict()

var (
	errJWSChars  = errors.New("token holds characters outside the base64url alphabet")
	errJWSHeader = errors.New("malformed JWS header")
	errJWSAlg    = errors.New("signature algorithm not allowed")
	errJWSCrit   = errors.New("critical header extensions are not supported")
	errSignature = errors.New("signature invalid")
)

// allowedAlg reports whether alg is in AllowedAlgorithms, exactly.
func allowedAlg(alg string) bool {
	for _, a := range AllowedAlgorithms {
		if string(a) == alg {
			return true
		}
	}
	return false
}

// parseCompactJWS splits and decodes token. It checks the form, the header
// and the algorithm; the signature is checked by verify.
func parseCompactJWS(token string) (compactJWS, error) {
	if len(token) > MaxTokenBytes {
		return compactJWS{}, errTooLarge
	}
	if strings.Count(token, ".") != 2 {
		return compactJWS{}, errNotJWS
	}
	// The strict decoder refuses every character outside the alphabet but
	// CR and LF, which encoding/base64 skips; refuse those here.
	if strings.ContainsAny(token, "\r\n") {
		return compactJWS{}, errJWSChars
	}
	h, rest, _ := strings.Cut(token, ".")
	p, s, _ := strings.Cut(rest, ".")
	if h == "" || p == "" || s == "" {
		return compactJWS{}, errNotJWS
	}
	hdr, err := b64url.DecodeString(h)
	if err != nil {
		return compactJWS{}, errJWSHeader
	}
	t := compactJWS{signed: token[:len(h)+1+len(p)]}
	if err := parseJWSHeader(hdr, &t); err != nil {
		return compactJWS{}, err
	}
	if t.payload, err = b64url.DecodeString(p); err != nil {
		return compactJWS{}, errors.New("payload is not base64url")
	}
	if t.sig, err = b64url.DecodeString(s); err != nil {
		return compactJWS{}, errors.New("signature is not base64url")
	}
	return t, nil
}

// parseJWSHeader reads alg and kid from a JOSE header. The header must be
// exactly one JSON object with nothing after it; alg is required and must
// be allowed; crit (and b64, which only has meaning through crit) are
// refused, as is a repeated alg, kid, crit or b64.
func parseJWSHeader(b []byte, t *compactJWS) error {
	r := jsonReader{b: b}
	var seenAlg, seenKid bool
	err := r.topObject(func(key []byte) error {
		switch string(key) {
		case "alg":
			if seenAlg {
				return errJWSHeader
			}
			seenAlg = true
			s, err := r.str()
			if err != nil {
				return errJWSHeader
			}
			t.alg = s
		case "kid":
			if seenKid {
				return errJWSHeader
			}
			seenKid = true
			s, err := r.str()
			if err != nil {
				return errJWSHeader
			}
			t.kid = s
		case "crit", "b64":
			return errJWSCrit
		default:
			return r.skip()
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, errJWSCrit) || errors.Is(err, errJWSHeader) {
			return err
		}
		return fmt.Errorf("%w: %w", errJWSHeader, err)
	}
	if !seenAlg {
		return errJWSAlg
	}
	for _, a := range AllowedAlgorithms {
		if string(a) == t.alg {
			t.alg = string(a) // the constant, not a copy from the token
			return nil
		}
	}
	return errJWSAlg
}

// verify checks t's signature with k. keyFitsAlg must already hold; it is
// checked again here so that no caller can skip it.
func (t *compactJWS) verify(k *jose.JSONWebKey) error {
	if !keyFitsAlg(*k, t.alg) {
		return errUnknownKey
	}
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		h := hashOf(t.alg)
		digest := digestOf(h, t.signed)
		var err error
		if t.alg[0] == 'P' {
			// RFC 7518 §3.5: the salt is as long as the hash. nil options
			// would accept any salt length (Wycheproof tcIds 281-286).
			err = rsa.VerifyPSS(pub, h, digest, t.sig, &rsa.PSSOptions{SaltLength: h.Size()})
		} else {
			err = rsa.VerifyPKCS1v15(pub, h, digest, t.sig)
		}
		if err != nil {
			return errSignature
		}
		return nil
	case *ecdsa.PublicKey:
		curve, size := ecCurve(t.alg)
		if curve == nil || pub.Curve != curve || len(t.sig) != 2*size {
			return errSignature
		}
		r := new(big.Int).SetBytes(t.sig[:size])
		s := new(big.Int).SetBytes(t.sig[size:])
		// ecdsa.Verify refuses r or s outside [1, N-1], so r=s=0 fails.
		if !ecdsa.Verify(pub, digestOf(hashOf(t.alg), t.signed), r, s) {
			return errSignature
		}
		return nil
	case ed25519.PublicKey:
		if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, []byte(t.signed), t.sig) {
			return errSignature
		}
		return nil
	}
	return errUnknownKey
}

func hashOf(alg string) crypto.Hash {
	switch alg[len(alg)-3:] {
	case "384":
		return crypto.SHA384
	case "512":
		return crypto.SHA512
	}
	return crypto.SHA256
}

func digestOf(h crypto.Hash, s string) []byte {
	switch h {
	case crypto.SHA384:
		d := sha512.Sum384([]byte(s))
		return d[:]
	case crypto.SHA512:
		d := sha512.Sum512([]byte(s))
		return d[:]
	}
	d := sha256.Sum256([]byte(s))
	return d[:]
}

// ecCurve is the curve and scalar size an ES* algorithm requires.
func ecCurve(alg string) (elliptic.Curve, int) {
	switch alg {
	case "ES256":
		return elliptic.P256(), 32
	case "ES384":
		return elliptic.P384(), 48
	case "ES512":
		return elliptic.P521(), 66
	}
	return nil, 0
}

// unverifiedIssuer reads the iss of a compact JWS without verifying it,
// only to pick the verifier that will; "" when it cannot be read.
func unverifiedIssuer(raw string) string {
	if len(raw) > MaxTokenBytes {
		return ""
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	c, err := parseClaims(payload)
	if err != nil {
		return ""
	}
	return c.Iss
}
