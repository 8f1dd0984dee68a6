package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

// Fuzz workers are separate processes: the keys must be the same in all of
// them, so they are fixed here (test-only keys, used nowhere else).
const fuzzRSAKeyPEM = `
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCot6ZRj/sfI5YW
mmckOpHEVTA4mQlXIEkYJuaK7xJOcCKGovwJ6//QKmv5IcPnjBHNh3NzTTLh/Wsg
VyRRWH31ZKoPpMvljFcoedSKRvjg097OR1saD7uh62ybeoNnMI7wPFy+gCqYZVhH
jXqYCxjZ/C/j/+0gHaRLDYgmJ+YjWnZ4sXtpuWGB+4igSHeYM4VNWqd7IYvQ1Ydv
aeivoOJGVxwyoGa51AIJhZiDrK5ScPcpPOIE6YPxj19e/xUs9+S8xMu5eWkfFcKY
YRgVNNBcQmIWqfJ3j0BdqzhjNodiPCiYhc/tcxGTjzj0sGwiZHyq/EVtmz9iLLbB
IZaUSxiHAgMBAAECggEAANp49WWojAZGjpO2XNkM/rS9mzOu9+laZUxhEyfVbF8l
1Y+CfdxbPWbRh/+TOZscRfFe9KDZ1onNHmtCbETp0jFxqMWZIG6ezD4dhJuKS7zW
ni1/OPkGZnHF6V1rx7xXpMBxaadFT+MHWMlO6vD3bbbYWStkvCpaN+T4INVH1Trw
Tbg9A1SjHL3ll3QSx3ut9QCuPPbE3jT+25fs9NalCQF0wxKBaVGB57VnQhLpICrm
jd/5VwIBI/E25JQHU55X89fKuW1h6KchSh+5o5PEvT0i9r8TwDC+JluvZMVJ1SVV
G3AFEoCrB8lHGMc6JV6VF0q9dQTRSLxb3oG+x/BcJQKBgQDAzUwodBAi9VGjw/06
jCsv5nR6VkUwPuxGd9spwbfjGVA/fSgePCeSkr8mXREHCHhFlNUYZS3YDzglLTS4
Mi0kPE25pG/n/5gKzCW5ACR7MHNP3gh8TO/QWJF+hL5ZAA+jrx7VpWIni+00kvUv
k/UpZo2xyuBpGNEi3VKSCYcb3QKBgQDgBVSKghgbHpyCIOWCHpktGrn459kDKokP
Fp1hSJI3bw+JSMM0KY+wjVF55BB+r4BwHK9w1F26mRbfOrtgui2LdXcEyONnnJCu
uIc8GP8ZUPkAjMYlQpFGPZocXV0SoiSZ8KP6Q6ISONGZxLcMN2F0kixbcqNviVgF
g5NVGYXBswKBgG085IWXHP1xmUv8Y6GkgWOmYyBdeN4ZCK30gsxp4dJeKUWPmAdp
ddJqKruFx3wApIRoC0TDLvJXzSvjLRef9kutjyw7qtv7yR11BXqIRiM2FF+QIaar
wMR/KhBRDbhHfJT1R7cs+SwG7+L10M2gOyu121p85CEn2nayh3IOy+pRAoGAeNPn
KV3JyrbUC4vavjfqvl0v+YRzlDWY/z5fXF1cH/ITGyTXxIa2La/LRkcwbmQSjmWq
atzgQQjZQUXYUu+YKSQOMdJ4dSYJE3QL3OpOjUUTSKylIuuol44aVTo2PRqfSzhz
+UQJYnKq+pkTcc9dDRbaPeizJjGZ/D9fdAL0FekCgYEAkNocQ+bRH6+5C6gRH+QC
W8evOA8B/Aj9f7T3Jkt6HN28Y9ngKhSWTphRU0WK1y8SDkybQ7Xqodlke4ptMyv9
dMFiAHnlG7HaP0shoCJ+jXrNhB0UMWdvqJY4hAA7kXXkt+GX3MsYhjr/CPz9IrOe
n8UyqhBPYZNoP3tSjT7fJ9s=
-----END PRIVATE KEY-----
`

var fuzzNow = time.Unix(1_750_000_000, 0)

const (
	fuzzIssuer   = "https://issuer.fuzz.test"
	fuzzAudience = "api://fuzz"
)

type fuzzKeys struct{ rsa, ec, ed *authtest.Key }

func (k fuzzKeys) all() []*authtest.Key { return []*authtest.Key{k.rsa, k.ec, k.ed} }

func newFuzzKeys(t testing.TB) fuzzKeys {
	t.Helper()
	block, _ := pem.Decode([]byte(fuzzRSAKeyPEM))
	if block == nil {
		t.Fatal("fuzz RSA key: no PEM block")
	}
	rk, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("idflow fuzz P-256 key"))
	ek, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d[:])
	if err != nil {
		t.Fatal(err)
	}
	seed := sha256.Sum256([]byte("idflow fuzz Ed25519 key"))
	return fuzzKeys{
		rsa: &authtest.Key{KID: "rsa-f", Alg: jose.RS256, Signer: rk.(crypto.Signer)},
		ec:  &authtest.Key{KID: "ec-f", Alg: jose.ES256, Signer: ek},
		ed:  &authtest.Key{KID: "ed-f", Alg: jose.EdDSA, Signer: ed25519.NewKeyFromSeed(seed[:])},
	}
}

func fuzzVerifier(t testing.TB, keys fuzzKeys, mutate func(*VerifierConfig)) *Verifier {
	t.Helper()
	var jwks []jose.JSONWebKey
	for _, k := range keys.all() {
		jwks = append(jwks, k.JWK())
	}
	cfg := VerifierConfig{
		Issuers: []string{fuzzIssuer}, Audiences: []string{fuzzAudience},
		CacheSize: -1, Now: func() time.Time { return fuzzNow },
	}
	if mutate != nil {
		mutate(&cfg)
	}
	v, err := NewVerifier(cfg, NewStaticKeySet(jwks...))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// fuzzClaims returns realistic claims sets valid at fuzzNow.
func fuzzClaims() []authtest.Claims {
	now := fuzzNow.Unix()
	base := authtest.Claims{"iss": fuzzIssuer, "aud": fuzzAudience, "iat": now, "nbf": now - 60, "exp": now + 3600}
	with := func(kv ...any) authtest.Claims {
		c := base.Without() // a copy
		for i := 0; i+1 < len(kv); i += 2 {
			c[kv[i].(string)] = kv[i+1]
		}
		return c
	}
	return []authtest.Claims{
		with("sub", "alice"),
		with("oid", "00000000-0000-0000-0000-0000000000a1", "sub", "pairwise", "tid", "t-one", "ver", "2.0",
			"scp", "access_as_user User.Read", "azp", "client-1", "preferred_username", "alice@contoso.example",
			"name", "Alice", "roles", []string{"admin"}, "groups", []string{"g1", "g2"}),
		with("oid", "u-2", "tid", "t-one", "ver", "1.0", "scp", "user_impersonation", "appid", "client-1", "upn", "bob@contoso.example"),
		with("oid", "sp-1", "sub", "sp-1", "tid", "t-one", "ver", "2.0", "azp", "daemon", "roles", []string{"idflow.internal"}),
		with("oid", "sp-1", "sub", "sp-1", "idtyp", "app", "azp", "daemon"),
		with("sub", "svc", "client_id", "svc", "scope", "stats.read"),
		with("sub", "u-9", "client_id", "web", "scope", "openid profile"),
		with("oid", "u-3", "ver", "2.0", "scp", "a", "_claim_names", map[string]any{"groups": "src1"},
			"_claim_sources", map[string]any{"src1": map[string]any{"endpoint": "https://graph.example"}}),
		with("oid", "u-4", "hasgroups", true, "idtyp", "user"),
		with("sub", "", "oid", ""),
		with("sub", " "),
	}
}

// FuzzVerify feeds arbitrary token strings to Verify over a static key
// set. It must never panic, and whatever it accepts must carry a signature
// that go-jose, as an independent implementation, verifies with one of the
// issuer's keys over the same payload.
func FuzzVerify(f *testing.F) {
	keys := newFuzzKeys(f)
	v := fuzzVerifier(f, keys, nil)
	sign := func(k *authtest.Key, c any, opts ...authtest.SignOption) string {
		return authtest.SignWith(f, k, c, opts...)
	}
	for _, c := range fuzzClaims() {
		for _, k := range keys.all() {
			f.Add(sign(k, c))
		}
	}
	c := fuzzClaims()[0]
	evil := authtest.NewKey(f, jose.ES256, "ec-f")
	for _, s := range []string{
		"", ".", "..", "...", "a.b.c", "a.b.c.d.e",
		authtest.Compact(map[string]any{"alg": "none"}, c, nil),
		authtest.Compact(map[string]any{"alg": "nOnE", "kid": "rsa-f"}, c, []byte("sig")),
		sign(keys.rsa, c, authtest.WithHMAC("HS256", mustJSONf(f, keys.rsa.JWK())), authtest.WithKID("rsa-f")),
		sign(evil, c, authtest.WithHeader("jwk", evil.JWK())),
		sign(keys.rsa, c, authtest.WithHeader("crit", []string{"b64"}), authtest.WithHeader("b64", false)),
		sign(keys.rsa, c, authtest.WithKID("../../etc/passwd")),
		sign(keys.ec, c, authtest.WithSignature(make([]byte, 64))),
		sign(keys.rsa, []byte(`{"sub":"a","sub":"b"}`)),
		sign(keys.rsa, c, authtest.WithTamperedPayload(func(p []byte) []byte { return append(p, ' ') })),
		strings.Repeat("A", 100) + "." + strings.Repeat("B", 100) + "." + strings.Repeat("C", 100),
	} {
		f.Add(s)
	}
	var jwks []jose.JSONWebKey
	for _, k := range keys.all() {
		jwks = append(jwks, k.JWK())
		// The seeds must reach the "accepted" branch, or the property
		// below is never exercised.
		if _, err := v.Verify(context.Background(), sign(k, c)); err != nil {
			f.Fatalf("a valid %s seed is refused: %v", k.Alg, err)
		}
	}
	f.Fuzz(func(t *testing.T, tok string) {
		got, err := v.Verify(context.Background(), tok)
		if err != nil {
			if code := idflow.ErrorCode(err); code != idflow.EUNAUTHORIZED && code != idflow.EFORBIDDEN {
				t.Fatalf("unexpected code %q: %v", code, err)
			}
			if len(tok) >= 16 && strings.Contains(err.Error(), tok) {
				t.Fatal("the error contains the token")
			}
			return
		}
		if got.Principal.Kind == idflow.KindUser && blank(got.Principal.UserID) {
			t.Fatalf("user Principal without user id: %+v", got.Principal)
		}
		// Independent check of the signature.
		jws, err := jose.ParseSignedCompact(tok, AllowedAlgorithms)
		if err != nil {
			t.Fatalf("accepted a token go-jose cannot parse: %v", err)
		}
		var ok bool
		for _, k := range jwks {
			if k.KeyID != jws.Signatures[0].Header.KeyID {
				continue
			}
			if payload, err := jws.Verify(k.Key); err == nil {
				if _, err := parseClaims(payload); err == nil {
					ok = true
				}
			}
		}
		if !ok {
			t.Fatalf("accepted a token not signed by the issuer: %q", tok)
		}
	})
}

func mustJSONf(t testing.TB, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// claimsAgainstJSONv2 runs parseClaims and holds it to json/v2
// (jsonv2_test.go):
//   - what parseClaims accepts, json/v2 reads the same — duplicate names
//     aside: parseClaims refuses a repeated claim it reads and ignores a
//     repeated one it does not, where json/v2 refuses both;
//   - what json/v2 accepts, parseClaims accepts, unless it nests deeper
//     than maxJSONDepth.
func claimsAgainstJSONv2(t *testing.T, payload []byte) (claims, error) {
	t.Helper()
	fast, ferr := parseClaims(payload)
	ref, rerr := v2Claims(payload)
	switch {
	case ferr == nil && rerr == nil:
		if !sameClaims(fast, ref) {
			t.Fatalf("parseClaims reads differently from json/v2:\n fast %+v\n v2   %+v\n payload %q", fast, ref, payload)
		}
	case ferr == nil:
		if !errors.Is(rerr, jsontext.ErrDuplicateName) {
			t.Fatalf("parseClaims accepted what json/v2 refuses (%v): %q", rerr, payload)
		}
		lax, lerr := v2Claims(payload, jsontext.AllowDuplicateNames(true))
		if lerr != nil || !sameClaims(fast, lax) {
			t.Fatalf("parseClaims ignored a repeated name and reads differently from json/v2 (%v):\n fast %+v\n v2   %+v\n payload %q", lerr, fast, lax, payload)
		}
	case rerr == nil:
		if !errors.Is(ferr, errTooDeep) {
			t.Fatalf("parseClaims refused (%v) what json/v2 accepts: %q", ferr, payload)
		}
	}
	return fast, ferr
}

func sameDate(a, b *numericDate) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(b.Time)
}

func sameClaims(a, b claims) bool {
	return a.Iss == b.Iss && a.Sub == b.Sub && slices.Equal(a.Aud, b.Aud) &&
		sameDate(a.Exp, b.Exp) && sameDate(a.Nbf, b.Nbf) && sameDate(a.Iat, b.Iat) &&
		a.Oid == b.Oid && a.Tid == b.Tid && a.Email == b.Email && a.PreferredUsername == b.PreferredUsername &&
		a.Upn == b.Upn && a.Name == b.Name && slices.Equal(a.Roles, b.Roles) && slices.Equal(a.Groups, b.Groups) &&
		a.ClaimNames == b.ClaimNames && a.HasGroups == b.HasGroups && slices.Equal(a.Scp, b.Scp) &&
		slices.Equal(a.Scope, b.Scope) && a.Idtyp == b.Idtyp && a.Ver == b.Ver && a.Azp == b.Azp &&
		a.Appid == b.Appid && a.ClientID == b.ClientID && a.Nonce == b.Nonce &&
		a.AtHash == b.AtHash && a.CHash == b.CHash
}

// FuzzClaims signs arbitrary payloads with the issuer's key and runs them
// through every claim check. It must never panic; a user Principal always
// has a user id; whatever is accepted satisfies iss, aud, exp, nbf, iat
// and the tenant allowlist; and parseClaims never reads a claim
// differently from json/v2 (claimsAgainstJSONv2).
func FuzzClaims(f *testing.F) {
	keys := newFuzzKeys(f)
	v := fuzzVerifier(f, keys, func(c *VerifierConfig) { c.Tenants = nil })
	vt := fuzzVerifier(f, keys, func(c *VerifierConfig) {
		c.Tenants = []string{"t-one"}
		c.UserClaims = []string{"employee_id", "oid", "sub"}
		c.RequiredScope = "access_as_user"
	})
	for _, c := range fuzzClaims() {
		f.Add(mustJSONf(f, c))
	}
	for _, s := range []string{
		`{}`, `[]`, `null`, `"x"`, `{"sub":"a"}`,
		`{"iss":"https://issuer.fuzz.test","aud":"api://fuzz","exp":1750003600,"sub":"a","sub":"b"}`,
		`{"iss":"https://issuer.fuzz.test","aud":"api://fuzz","exp":1750003600,"OID":"evil","sub":"a"}`,
		`{"iss":"https://issuer.fuzz.test","aud":"api://fuzz","exp":1750003600,"\u006fid":"esc","sub":"a"}`,
		`{"iss":"https://issuer.fuzz.test","aud":["api://fuzz",null],"exp":1.7500036e9,"sub":"a"}`,
		`{"iss":"https://issuer.fuzz.test","aud":"api://fuzz","exp":"1750003600","sub":"a"}`,
		`{"iss":"https://issuer.fuzz.test","aud":"api://fuzz","exp":1750003600,"sub":"\ud800"}`,
		`{"iss":"https://issuer.fuzz.test","aud":"api://fuzz","exp":1750003600,"sub":"a","x":[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}`,
		`{"iss":"https://issuer.fuzz.test","aud":"api://fuzz","exp":1750003600,"sub":"a"} {}`,
		`{"iss":"https://issuer.fuzz.test","aud":"api://fuzz","exp":1750003600,"employee_id":"E1","tid":"t-one","scp":"access_as_user"}`,
		`{"iss":"https://issuer.fuzz.test","aud":"api://fuzz","exp":1e400,"sub":"a"}`,
		`{"iss":"https://issuer.fuzz.test","aud":"api://fuzz","exp":-0,"sub":"a"}`,
		`{"iss":"https://issuer.fuzz.test","aud":"api://fuzz","exp":` + strings.Repeat("9", 400) + `,"sub":"a"}`,
		"{\"iss\":\"https://issuer.fuzz.test\",\"aud\":\"api://fuzz\",\"exp\":1750003600,\"sub\":\"a\xff\"}",
		`{"iss":"https://issuer.fuzz.test","aud":"api://fuzz","exp":1750003600,"sub":"a","x":"\udc00"}`,
		`{"iss":"https://issuer.fuzz.test","aud":"api://fuzz","exp":1750003600,"sub":"a","x":"\ud800\u0041"}`,
		`{"iss":"https://issuer.fuzz.test","aud":"api://fuzz","exp":1750003600,"sub":"\ud83d\ude00"}`,
		`{"iss":"https://issuer.fuzz.test","aud":"api://fuzz","exp":1750003600,"sub":"a","x":1,"x":2}`,
		`{"iss":"https://issuer.fuzz.test","aud":"api://fuzz","exp":1750003600,"sub":"a","x":{"y":1,"y":2}}`,
		`{"iss":"https://issuer.fuzz.test","aud":"api://fuzz","exp":1750003600,"sub":"a","_claim_names":{"groups":1,"groups":2}}`,
		`{"iss":"https://issuer.fuzz.test","aud":"api://fuzz","exp":1750003600,"sub":"a","x":` + strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1) + `}`,
		`{"iss":"https://issuer.fuzz.test","aud":"api://fuzz","exp":null,"nbf":null,"sub":null,"roles":null,"hasgroups":null,"_claim_names":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		fast, ferr := claimsAgainstJSONv2(t, payload)
		tok := authtest.SignWith(t, keys.ed, payload)
		for _, ver := range []*Verifier{v, vt} {
			got, err := ver.Verify(context.Background(), tok)
			if err != nil {
				if code := idflow.ErrorCode(err); code != idflow.EUNAUTHORIZED && code != idflow.EFORBIDDEN {
					t.Fatalf("code %q: %v", code, err)
				}
				continue
			}
			if ferr != nil {
				t.Fatalf("Verify accepted claims parseClaims refuses: %q", payload)
			}
			p := got.Principal
			if p.Kind != idflow.KindUser && p.Kind != idflow.KindApp {
				t.Fatalf("kind %q", p.Kind)
			}
			if checkUserID(p.UserID) != nil {
				t.Fatalf("Principal without a well-formed user id: %+v from %q", p, payload)
			}
			if fast.idToken() {
				t.Fatalf("an ID token accepted: %q", payload)
			}
			if p.Kind == idflow.KindUser && ver == vt && !p.HasScope("access_as_user") {
				t.Fatalf("user without the required scope accepted: %q", payload)
			}
			if fast.Iss != fuzzIssuer || !slices.Contains(fast.Aud, fuzzAudience) || fast.Exp == nil ||
				!fuzzNow.Before(fast.Exp.Add(ver.cfg.Leeway)) ||
				fast.Nbf != nil && fuzzNow.Add(ver.cfg.Leeway).Before(fast.Nbf.Time) ||
				fast.Iat != nil && fuzzNow.Add(ver.cfg.Leeway).Before(fast.Iat.Time) {
				t.Fatalf("accepted claims that fail iss/aud/exp/nbf/iat: %q", payload)
			}
			if ver == vt && (fast.Tid != "t-one" || p.TenantID != "t-one") {
				t.Fatalf("tenant allowlist bypassed: %q", payload)
			}
			if p.Roles == nil || p.Groups == nil || p.Scopes == nil {
				t.Fatalf("nil lists: %+v", p)
			}
			if p.GroupsOverage && len(p.Groups) > 0 && !slices.Equal(p.Groups, []string(fast.Groups)) {
				t.Fatalf("groups guessed: %+v", p)
			}
		}
	})
}

// FuzzJWSHeader holds parseJWSHeader to json/v2 (v2JWSHeader), with the
// rules of claimsAgainstJSONv2: the same alg and kid whenever both accept;
// what it accepts json/v2 accepts, duplicate names of unread members
// aside; what json/v2 accepts it accepts, unless nested too deeply.
func FuzzJWSHeader(f *testing.F) {
	for _, s := range []string{
		`{"alg":"RS256","kid":"k1","typ":"JWT"}`, ` { "alg" : "ES256" } `, `{"alg":"EdDSA","kid":""}`,
		`{"alg":"RS256"}{"alg":"none"}`, `{"alg":"RS256"} x`, `{"alg":"RS256","alg":"RS256"}`,
		`{"alg":"RS256","x":1,"x":2}`, `{"alg":"RS256","kid":null}`, `{"alg":null}`, `{"alg":"none"}`,
		`{"alg":"HS256","kid":"k"}`, `{"alg":"RS256","crit":[]}`, `{"alg":"RS256","b64":false}`,
		`{"alg":"RS256","jwk":{"kty":"RSA","n":"AQAB","n":"AQAB"}}`, `{"alg":"RS256","kid":"\ud800"}`,
		`{"alg":"RS256","x":"\udfff"}`, `{"\u0061lg":"RS256"}`, `{"ALG":"RS256","alg":"ES256"}`,
		`{"alg":"RS256","x":` + strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1) + `}`,
		"{\"alg\":\"RS256\",\"kid\":\"\xff\"}", `[]`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var got compactJWS
		ferr := parseJWSHeader(b, &got)
		alg, kid, rerr := v2JWSHeader(b)
		switch {
		case ferr == nil && rerr == nil:
			if got.alg != alg || got.kid != kid {
				t.Fatalf("alg %q kid %q, json/v2 reads alg %q kid %q: %q", got.alg, got.kid, alg, kid, b)
			}
		case ferr == nil:
			if !errors.Is(rerr, jsontext.ErrDuplicateName) {
				t.Fatalf("parseJWSHeader accepted what json/v2 refuses (%v): %q", rerr, b)
			}
			alg, kid, lerr := v2JWSHeader(b, jsontext.AllowDuplicateNames(true))
			if lerr != nil || got.alg != alg || got.kid != kid {
				t.Fatalf("with a repeated unread name: alg %q kid %q, json/v2 reads alg %q kid %q (%v): %q", got.alg, got.kid, alg, kid, lerr, b)
			}
		case rerr == nil:
			if !errors.Is(ferr, errTooDeep) {
				t.Fatalf("parseJWSHeader refused (%v) what json/v2 accepts: %q", ferr, b)
			}
		}
	})
}

// FuzzParsePrefixes: never panics; on success every prefix is valid and
// masked, every bare address is contained in its prefix, and the result
// round-trips through its own String form.
func FuzzParsePrefixes(f *testing.F) {
	for _, s := range []string{
		"", ",", "10.0.0.0/8", "10.0.0.0/8, 192.168.1.1", "2001:db8::/32", "::ffff:10.0.0.1",
		"::ffff:10.0.0.0/104", "0.0.0.0/0", "::/0", "fe80::1%eth0", "fe80::/10", "127.0.0.1/32 , ::1",
		"10.0.0.0/33", "1.2.3.4/-1", "10.0.0.1/8", " 172.16.0.0/12 ,, 100.64.0.0/10 ",
		"1.2.3", "300.1.1.1", "::ffff:1.2.3.4/128", "10.0.0.0/8/8", "10.0.0.0\x00/8",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParsePrefixes(s)
		if err != nil {
			return
		}
		var strs []string
		for _, p := range got {
			if !p.IsValid() || p != p.Masked() {
				t.Fatalf("%q: prefix %v invalid or not masked", s, p)
			}
			strs = append(strs, p.String())
		}
		for _, field := range strings.Split(s, ",") {
			field = strings.TrimSpace(field)
			if field == "" || strings.Contains(field, "/") {
				continue
			}
			a, err := netip.ParseAddr(field)
			if err != nil {
				t.Fatalf("%q: ParsePrefixes accepted bad address %q", s, field)
			}
			if !slices.ContainsFunc(got, func(p netip.Prefix) bool { return p.Contains(a.Unmap().WithZone("")) }) {
				t.Fatalf("%q: address %v is not in any parsed prefix %v", s, a, got)
			}
		}
		again, err := ParsePrefixes(strings.Join(strs, ","))
		if err != nil || !slices.Equal(again, got) {
			t.Fatalf("%q: round trip %v → %v (%v)", s, got, again, err)
		}
	})
}
