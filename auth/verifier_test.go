package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

// ---- shared helpers (used by every _test.go file of package auth) ----

// fakeClock is a settable clock; tests move it instead of sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_750_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fixture is a test issuer, a remote key set over its JWKS and a verifier,
// all on one fake clock. The verified-token cache is off unless a test
// turns it on, so that every Verify runs every check.
type fixture struct {
	iss   *authtest.Issuer
	clock *fakeClock
	keys  *RemoteKeySet
	v     *Verifier
}

func newFixture(t testing.TB, mutate func(*VerifierConfig), opts ...authtest.Option) *fixture {
	t.Helper()
	clock := newFakeClock()
	iss := authtest.NewIssuer(t, append([]authtest.Option{authtest.WithClock(clock.Now)}, opts...)...)
	keys := NewRemoteKeySet(iss.JWKSURL(), nil, 0, nil)
	keys.now = clock.Now
	cfg := VerifierConfig{
		Issuers:   []string{iss.Issuer()},
		Audiences: []string{iss.Audience()},
		CacheSize: -1,
		Now:       clock.Now,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	v, err := NewVerifier(cfg, keys)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return &fixture{iss: iss, clock: clock, keys: keys, v: v}
}

// base returns valid plain-OIDC claims for sub.
func (f *fixture) base(sub string) authtest.Claims { return f.iss.OIDC(sub) }

func mustVerify(t testing.TB, v *Verifier, tok string) Token {
	t.Helper()
	got, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatalf("Verify refused a valid token: %v", err)
	}
	return got
}

// mustRefuse asserts that v refuses tok with code, and that the error
// leaks neither the token nor any sizeable part of it.
func mustRefuse(t testing.TB, v *Verifier, tok, code string) error {
	t.Helper()
	got, err := v.Verify(context.Background(), tok)
	if err == nil {
		t.Fatalf("Verify accepted the token: %+v", got.Principal)
	}
	if c := idflow.ErrorCode(err); c != code {
		t.Fatalf("error code = %q, want %q (err: %v)", c, code, err)
	}
	if got.Principal.UserID != "" || got.Principal.Kind != "" {
		t.Fatalf("a refusal returned a Principal: %+v", got.Principal)
	}
	assertNoToken(t, err, tok)
	return err
}

// assertNoToken fails when err's text (the full chain, as logged, and the
// caller-safe message) contains tok or any of its parts of 16+ bytes.
func assertNoToken(t testing.TB, err error, tok string) {
	t.Helper()
	for _, text := range []string{err.Error(), idflow.ErrorMessage(err)} {
		if tok != "" && strings.Contains(text, tok) {
			t.Fatalf("error contains the token")
		}
		for part := range strings.SplitSeq(tok, ".") {
			if len(part) >= 16 && strings.Contains(text, part) {
				t.Fatalf("error contains a part of the token: %.80q", text)
			}
		}
	}
}

func attackerKey(t testing.TB, alg jose.SignatureAlgorithm, kid string) *authtest.Key {
	return authtest.NewKey(t, alg, kid)
}

// jwkMap is k's public JWK as a JSON object, to embed in a header.
func jwkMap(t testing.TB, k *authtest.Key) map[string]any {
	t.Helper()
	b, err := json.Marshal(k.JWK())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustB64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// countingServer is an httptest server that counts every request.
func countingServer(t testing.TB, h http.Handler) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// ---- configuration ----

func TestNewVerifierFailsClosed(t *testing.T) {
	keys := NewStaticKeySet()
	ok := VerifierConfig{Issuers: []string{"https://issuer.example"}, Audiences: []string{"api://a"}}
	if _, err := NewVerifier(ok, keys); err != nil {
		t.Fatalf("a minimal valid config was refused: %v", err)
	}
	max := ok
	max.Leeway = MaxLeeway
	if _, err := NewVerifier(max, keys); err != nil {
		t.Fatalf("leeway == MaxLeeway was refused: %v", err)
	}
	cases := []struct {
		name string
		cfg  func(c *VerifierConfig)
		keys KeySet
	}{
		{"no issuer", func(c *VerifierConfig) { c.Issuers = nil }, keys},
		{"empty issuer", func(c *VerifierConfig) { c.Issuers = []string{""} }, keys},
		{"empty issuer among others", func(c *VerifierConfig) { c.Issuers = []string{"https://issuer.example", ""} }, keys},
		{"no audience", func(c *VerifierConfig) { c.Audiences = nil }, keys},
		{"empty audience", func(c *VerifierConfig) { c.Audiences = []string{""} }, keys},
		{"leeway over 60s", func(c *VerifierConfig) { c.Leeway = MaxLeeway + time.Second }, keys},
		{"leeway 1h", func(c *VerifierConfig) { c.Leeway = time.Hour }, keys},
		{"negative leeway", func(c *VerifierConfig) { c.Leeway = -time.Second }, keys},
		{"no key set", func(c *VerifierConfig) {}, nil},
		{"multi-tenant issuer without tenants", func(c *VerifierConfig) {
			c.Issuers = []string{"https://login.microsoftonline.com/{tenantid}/v2.0"}
		}, keys},
		{"multi-tenant issuer among others without tenants", func(c *VerifierConfig) {
			c.Issuers = []string{"https://issuer.example", "https://sts.windows.net/{tenantid}/"}
		}, keys},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			cfg.Issuers = slices.Clone(ok.Issuers)
			cfg.Audiences = slices.Clone(ok.Audiences)
			tc.cfg(&cfg)
			v, err := NewVerifier(cfg, tc.keys)
			if err == nil || v != nil {
				t.Fatalf("NewVerifier accepted an unsafe config: %+v", cfg)
			}
		})
	}
}

// ---- signature and header attacks ----

func TestVerifyAcceptsEveryAllowedKeyType(t *testing.T) {
	f := newFixture(t, nil)
	ps := authtest.NewKey(t, jose.PS256, "ps-1")
	f.iss.AddKey(ps)
	for _, k := range []*authtest.Key{f.iss.RSA(), f.iss.EC(), f.iss.Ed(), ps} {
		t.Run(string(k.Alg), func(t *testing.T) {
			tok := f.iss.Sign(f.base("user-"+k.KID), authtest.WithKey(k))
			got := mustVerify(t, f.v, tok)
			if got.Principal.UserID != "user-"+k.KID {
				t.Fatalf("UserID = %q", got.Principal.UserID)
			}
		})
	}
}

func TestVerifyRefusesAlgNone(t *testing.T) {
	f := newFixture(t, nil)
	claims := f.base("mallory")
	valid := f.iss.Sign(claims)
	realSig := valid[strings.LastIndexByte(valid, '.')+1:]
	mustVerify(t, f.v, valid) // control: the same claims, properly signed, pass
	for _, alg := range []string{"none", "None", "NONE", "nOnE"} {
		for _, withSig := range []bool{false, true} {
			name := alg + "/no-signature"
			if withSig {
				name = alg + "/with-signature"
			}
			t.Run(name, func(t *testing.T) {
				for _, hdr := range []map[string]any{
					{"alg": alg, "typ": "JWT"},
					{"alg": alg, "typ": "JWT", "kid": f.iss.RSA().KID},
				} {
					tok := authtest.Compact(hdr, claims, nil)
					if withSig {
						tok += realSig
					}
					mustRefuse(t, f.v, tok, idflow.EUNAUTHORIZED)
					// And the two-dot-less form some libraries emit.
					mustRefuse(t, f.v, strings.TrimSuffix(tok, "."), idflow.EUNAUTHORIZED)
				}
			})
		}
	}
}

func TestVerifyRefusesHMACWithPublicKey(t *testing.T) {
	f := newFixture(t, nil)
	rsaKey := f.iss.RSA()
	pub := rsaKey.Public().(*rsa.PublicKey)
	pkix, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := x509.MarshalPKCS1PublicKey(pub)
	jwkJSON, err := json.Marshal(rsaKey.JWK())
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string][]byte{
		"PEM PKIX":   pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}),
		"PEM PKCS1":  pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: pkcs1}),
		"DER PKIX":   pkix,
		"DER PKCS1":  pkcs1,
		"JWK JSON":   jwkJSON,
		"modulus":    pub.N.Bytes(),
		"PEM no EOL": []byte(strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix})))),
	}
	claims := f.base("mallory")
	for _, alg := range []string{"HS256", "HS384", "HS512"} {
		for name, secret := range secrets {
			t.Run(alg+"/"+name, func(t *testing.T) {
				for _, kid := range []authtest.SignOption{authtest.WithKID(rsaKey.KID), authtest.WithoutKID()} {
					tok := f.iss.Sign(claims, authtest.WithHMAC(alg, secret), kid)
					mustRefuse(t, f.v, tok, idflow.EUNAUTHORIZED)
				}
			})
		}
	}
}

func TestVerifyIgnoresHeaderKeys(t *testing.T) {
	f := newFixture(t, nil)
	evil := attackerKey(t, jose.RS256, "evil-1")
	evilEC := attackerKey(t, jose.ES256, "evil-ec")

	// The attacker's own JWKS, on a server whose every request is counted.
	attackerJWKS, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{evil.JWK(), evilEC.JWK()}})
	attacker, hits := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(attackerJWKS)
	}))

	claims := f.base("mallory")
	mustVerify(t, f.v, f.iss.Sign(claims)) // control
	type tc struct {
		name string
		key  *authtest.Key
		opts []authtest.SignOption
	}
	var cases []tc
	for _, k := range []*authtest.Key{evil, evilEC} {
		for _, kid := range []string{k.KID, f.iss.RSA().KID, f.iss.EC().KID, ""} {
			kidOpt := authtest.WithKID(kid)
			if kid == "" {
				kidOpt = authtest.WithoutKID()
			}
			cases = append(cases,
				tc{"jwk/" + k.KID + "/kid=" + kid, k, []authtest.SignOption{kidOpt, authtest.WithHeader("jwk", jwkMap(t, k))}},
				tc{"jku/" + k.KID + "/kid=" + kid, k, []authtest.SignOption{kidOpt, authtest.WithHeader("jku", attacker.URL+"/jwks.json")}},
				tc{"x5u/" + k.KID + "/kid=" + kid, k, []authtest.SignOption{kidOpt, authtest.WithHeader("x5u", attacker.URL+"/cert.pem")}},
				tc{"all/" + k.KID + "/kid=" + kid, k, []authtest.SignOption{kidOpt,
					authtest.WithHeader("jwk", jwkMap(t, k)),
					authtest.WithHeader("jku", attacker.URL+"/jwks.json"),
					authtest.WithHeader("x5u", attacker.URL+"/cert.pem")}},
			)
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Each case starts past the cooldown, so an unknown kid may
			// legitimately refetch the issuer's JWKS, never the attacker's.
			f.clock.Advance(DefaultJWKSCooldown)
			tok := authtest.SignWith(t, c.key, claims, c.opts...)
			mustRefuse(t, f.v, tok, idflow.EUNAUTHORIZED)
		})
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the attacker's server was contacted %d times", n)
	}
}

func TestVerifyRefusesKidInjection(t *testing.T) {
	f := newFixture(t, nil)
	claims := f.base("mallory")
	mustVerify(t, f.v, f.iss.Sign(claims)) // control, and loads the keys
	fetches := f.iss.JWKSRequests()
	evil := attackerKey(t, jose.RS256, "evil")
	kids := map[string]string{
		"path traversal": "../../etc/passwd",
		"path abs":       "/dev/null",
		"sql":            "' OR '1'='1' --",
		"sql union":      "x' UNION SELECT 'secret' FROM keys --",
		"very long":      strings.Repeat("k", 4096),
		"nul":            "rsa-1\x00",
		"unknown":        "no-such-kid",
		"legit suffix":   f.iss.RSA().KID + " ",
		"case":           strings.ToUpper(f.iss.RSA().KID),
		"url":            "https://attacker.example/key",
	}
	for name, kid := range kids {
		t.Run(name+"/issuer-key", func(t *testing.T) {
			// Signed by the issuer's real key: the injected kid still
			// matches nothing, so nothing may be tried.
			mustRefuse(t, f.v, f.iss.Sign(claims, authtest.WithKID(kid)), idflow.EUNAUTHORIZED)
		})
		t.Run(name+"/attacker-key", func(t *testing.T) {
			mustRefuse(t, f.v, authtest.SignWith(t, evil, claims, authtest.WithKID(kid)), idflow.EUNAUTHORIZED)
		})
	}
	t.Run("empty/attacker-key", func(t *testing.T) {
		mustRefuse(t, f.v, authtest.SignWith(t, evil, claims, authtest.WithKID("")), idflow.EUNAUTHORIZED)
	})
	t.Run("absent/attacker-key", func(t *testing.T) {
		mustRefuse(t, f.v, authtest.SignWith(t, evil, claims, authtest.WithoutKID()), idflow.EUNAUTHORIZED)
	})
	t.Run("not a string", func(t *testing.T) {
		mustRefuse(t, f.v, f.iss.Sign(claims, authtest.WithHeader("kid", 1)), idflow.EUNAUTHORIZED)
		mustRefuse(t, f.v, f.iss.Sign(claims, authtest.WithHeader("kid", []string{"rsa-1"})), idflow.EUNAUTHORIZED)
	})
	// All of the above happened within one cooldown: no refetch at all.
	if n := f.iss.JWKSRequests() - fetches; n != 0 {
		t.Fatalf("unknown kids caused %d JWKS fetches inside the cooldown", n)
	}
	// A token without kid (or with an empty one) signed by the issuer is a
	// legitimate shape (kid is optional): it is checked against the
	// issuer's keys of its type.
	t.Run("absent/issuer-key accepted", func(t *testing.T) {
		mustVerify(t, f.v, f.iss.Sign(claims, authtest.WithoutKID()))
		mustVerify(t, f.v, f.iss.Sign(claims, authtest.WithKID("")))
	})
}

func TestVerifyRefusesZeroECDSASignature(t *testing.T) {
	f := newFixture(t, nil)
	valid := f.iss.Sign(f.base("alice"), authtest.WithKey(f.iss.EC()))
	mustVerify(t, f.v, valid)
	dot := strings.LastIndexByte(valid, '.')
	sig := mustB64(t, valid[dot+1:])
	if len(sig) != 64 {
		t.Fatalf("ES256 signature is %d bytes", len(sig))
	}
	zero := make([]byte, 32)
	n := f.iss.EC().Public().(*ecdsa.PublicKey).Curve.Params().N.FillBytes(make([]byte, 32))
	cases := map[string][]byte{
		"r=s=0":       make([]byte, 64),
		"r=0":         append(slices.Clone(zero), sig[32:]...),
		"s=0":         append(slices.Clone(sig[:32]), zero...),
		"r=s=n":       append(slices.Clone(n), n...),
		"r=n":         append(slices.Clone(n), sig[32:]...),
		"empty":       {},
		"short":       sig[:63],
		"long":        append(slices.Clone(sig), 0),
		"DER-encoded": derECDSA(sig),
	}
	for name, s := range cases {
		t.Run(name, func(t *testing.T) {
			mustRefuse(t, f.v, valid[:dot+1]+b64(s), idflow.EUNAUTHORIZED)
		})
	}
}

// derECDSA re-encodes a raw r||s signature as ASN.1 DER (the form JWS forbids).
func derECDSA(raw []byte) []byte {
	enc := func(b []byte) []byte {
		for len(b) > 1 && b[0] == 0 {
			b = b[1:]
		}
		if b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return append([]byte{0x02, byte(len(b))}, b...)
	}
	body := append(enc(raw[:32]), enc(raw[32:])...)
	return append([]byte{0x30, byte(len(body))}, body...)
}

func TestVerifyRefusesMalformedAndForgedTokens(t *testing.T) {
	f := newFixture(t, nil)
	claims := f.base("alice")
	valid := f.iss.Sign(claims)
	mustVerify(t, f.v, valid)
	parts := strings.Split(valid, ".")
	impostor := attackerKey(t, jose.RS256, f.iss.RSA().KID)

	big := f.iss.Sign(claims.With("padding", strings.Repeat("A", 1<<20)))
	cases := map[string]string{
		"empty":                    "",
		"one part":                 parts[0],
		"two parts":                parts[0] + "." + parts[1],
		"four parts":               valid + ".x",
		"JWE (5 parts)":            "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.OKOawDo13gRp2ojaHV7LFpZcgV7T6DVZKTyKOMTYUmKoTCVJRgckCL9kiMT03JGeipsEdY3mx_etLbbWSrFr05kLzcSr4qKAq7YN7e9jwQRb23nfa6c9d-StnImGyFDbSv04uVuxIp5Zms1gNxKKK2Da14B8S4rzVRltdYwam_lDp5XnZAYpQdb76FdIKLaVmqgfwX7XWRxv2322i-vDxRfqNzo_tETKzpVLzfiwQyeyPGLBIO56YJ7eObdv0je81860ppamavo35UgoRdbYaBcoh9QcfylQr66oc6vFWXRcZ_ZT2LawVCWTIy3brGPi6UklfCpIMfIjf7iGdXKHzg.48V1_ALb6US04U3b.5eym8TW_c8SuK0ltJ3rpYIzOeDQz7TALvtu6UG9oMo4vpzs9tX_EFShS8iB7j6jiSdiwkIr3ajwQzaBtQD_A.XFBoMYUZodetZdvTiFvSkQ",
		"1 MiB garbage":            strings.Repeat("a", 1<<20) + ".b.c",
		"1 MiB signed":             big,
		"just over MaxTokenBytes":  parts[0] + "." + strings.Repeat("A", MaxTokenBytes) + "." + parts[2],
		"impostor key, real kid":   authtest.SignWith(t, impostor, claims),
		"payload modified":         f.iss.Sign(claims, authtest.WithTamperedPayload(func(p []byte) []byte { return []byte(strings.Replace(string(p), `"sub":"alice"`, `"sub":"admin"`, 1)) })),
		"payload appended":         f.iss.Sign(claims, authtest.WithTamperedPayload(func(p []byte) []byte { return append(p, ' ') })),
		"signature truncated":      valid[:len(valid)-4],
		"signature empty":          parts[0] + "." + parts[1] + ".",
		"signature of other token": parts[0] + "." + parts[1] + "." + strings.Split(f.iss.Sign(claims.With("sub", "bob")), ".")[2],
		"header not base64":        "!!!." + parts[1] + "." + parts[2],
		"payload not base64":       parts[0] + ".***." + parts[2],
		"signature not base64":     parts[0] + "." + parts[1] + ".$$$",
		"padded base64":            parts[0] + "=." + parts[1] + "." + parts[2],
		"newline in payload":       parts[0] + "." + parts[1][:10] + "\n" + parts[1][10:] + "." + parts[2],
		"space-separated":          parts[0] + " ." + parts[1] + "." + parts[2],
		"header not JSON":          b64([]byte("alg=RS256")) + "." + parts[1] + "." + parts[2],
		"header JSON array":        b64([]byte(`["RS256"]`)) + "." + parts[1] + "." + parts[2],
		"no alg":                   f.iss.Sign(claims, authtest.WithHeader("alg", nil)),
		"alg not a string":         f.iss.Sign(claims, authtest.WithHeader("alg", 256)),
		"alg lower case":           f.iss.Sign(claims, authtest.WithAlg("rs256")),
		"alg unknown":              f.iss.Sign(claims, authtest.WithAlg("RS1")),
		"ES256 header, RSA key":    f.iss.Sign(claims, authtest.WithAlg("ES256")),
		"EdDSA header, RSA key":    f.iss.Sign(claims, authtest.WithAlg("EdDSA")),
		"RS256 header, EC key":     f.iss.Sign(claims, authtest.WithKey(f.iss.EC()), authtest.WithAlg("RS256")),
		"ES384 header, P-256 key":  f.iss.Sign(claims, authtest.WithKey(f.iss.EC()), authtest.WithAlg("ES384")),
		"PS256, pinned RS256 key":  f.iss.Sign(claims, authtest.WithAlg("PS256")),
		"crit unknown extension":   f.iss.Sign(claims, authtest.WithHeader("crit", []string{"urn:example:unknown"}), authtest.WithHeader("urn:example:unknown", true)),
		"crit exp":                 f.iss.Sign(claims, authtest.WithHeader("crit", []string{"exp"}), authtest.WithHeader("exp", 1)),
		"crit not an array":        f.iss.Sign(claims, authtest.WithHeader("crit", "urn:example:unknown")),
		"crit empty array":         f.iss.Sign(claims, authtest.WithHeader("crit", []string{})),
		"payload not JSON":         f.iss.Sign([]byte("sub=admin")),
		"payload JSON array":       f.iss.Sign([]byte(`[{"sub":"admin"}]`)),
		"payload JSON string":      f.iss.Sign([]byte(`"admin"`)),
		"payload trailing garbage": f.iss.Sign(append(mustJSON(t, claims), []byte(`{"sub":"admin"}`)...)),
		"payload empty":            f.iss.Sign([]byte{}),
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) { mustRefuse(t, f.v, tok, idflow.EUNAUTHORIZED) })
	}
}

// TestVerifyHeaderIsOneJSONObject: the protected header is exactly one
// JSON object. A second object (or anything else) after it used to be
// ignored, so a header could say one thing to idflow and another to a
// parser that reads the last object.
func TestVerifyHeaderIsOneJSONObject(t *testing.T) {
	f := newFixture(t, nil)
	claims := f.base("alice")
	kid := f.iss.RSA().KID
	header := func(s string) string {
		return f.iss.Sign(claims, authtest.WithRawHeader([]byte(s)))
	}
	// Controls: a raw header, white space around it included, verifies.
	mustVerify(t, f.v, header(`{"alg":"RS256","kid":"`+kid+`"}`))
	mustVerify(t, f.v, header(" \t\n{ \"alg\" : \"RS256\", \"kid\" : \""+kid+"\" }\r\n "))
	for name, h := range map[string]string{
		"second object":         `{"alg":"RS256","kid":"` + kid + `"}{"alg":"none"}`,
		"second object, spaced": `{"alg":"RS256","kid":"` + kid + `"} {"kid":"other"}`,
		"trailing garbage":      `{"alg":"RS256","kid":"` + kid + `"}x`,
		"trailing comma":        `{"alg":"RS256","kid":"` + kid + `"},`,
		"trailing NUL":          `{"alg":"RS256","kid":"` + kid + `"}` + "\x00",
		"two headers in array":  `[{"alg":"RS256","kid":"` + kid + `"}]`,
		"duplicate alg":         `{"alg":"RS256","kid":"` + kid + `","alg":"RS256"}`,
		"duplicate kid":         `{"alg":"RS256","kid":"` + kid + `","kid":"` + kid + `"}`,
	} {
		t.Run(name, func(t *testing.T) { mustRefuse(t, f.v, header(h), idflow.EUNAUTHORIZED) })
	}
}

// ---- claim rules ----

func TestVerifyTimeClaims(t *testing.T) {
	f := newFixture(t, nil) // default leeway 30 s
	now := f.clock.Now().Unix()
	base := f.base("alice")
	accept := map[string]authtest.Claims{
		"valid":                  base,
		"exp within leeway":      base.With("exp", now-20),
		"nbf within leeway":      base.With("nbf", now+20),
		"iat within leeway":      base.With("iat", now+20),
		"nbf and iat absent":     base.Without("nbf", "iat"),
		"fractional dates":       base.With("exp", float64(now)+3600.5).With("iat", float64(now)-0.25),
		"exp with exponent":      base.With("exp", json.RawMessage(`1.7500036e9`)),
		"nbf null (ignored)":     base.With("nbf", nil),
		"iat far in the past":    base.With("iat", now-86400),
		"exp far in the future":  base.With("exp", now+10*365*86400),
		"exp just inside leeway": base.With("exp", now-29),
	}
	for name, c := range accept {
		t.Run("accept/"+name, func(t *testing.T) { mustVerify(t, f.v, f.iss.Sign(c)) })
	}
	refuse := map[string]authtest.Claims{
		"expired":                  base.With("exp", now-3600),
		"expired beyond leeway":    base.With("exp", now-31),
		"expired at leeway":        base.With("exp", now-30),
		"exp missing":              base.Without("exp"),
		"exp null":                 base.With("exp", nil),
		"exp string":               base.With("exp", "9999999999"),
		"exp bool":                 base.With("exp", true),
		"exp array":                base.With("exp", []int64{now + 3600}),
		"exp object":               base.With("exp", map[string]any{"$date": now + 3600}),
		"exp negative":             base.With("exp", -1),
		"exp absurdly large":       base.With("exp", 1e300),
		"nbf in the future":        base.With("nbf", now+3600),
		"nbf beyond leeway":        base.With("nbf", now+31),
		"nbf string":               base.With("nbf", "0"),
		"iat in the future":        base.With("iat", now+3600),
		"iat beyond leeway":        base.With("iat", now+31),
		"iat string":               base.With("iat", "now"),
		"exp before nbf, both bad": base.With("exp", now-3600).With("nbf", now+3600),
	}
	for name, c := range refuse {
		t.Run("refuse/"+name, func(t *testing.T) { mustRefuse(t, f.v, f.iss.Sign(c), idflow.EUNAUTHORIZED) })
	}
	t.Run("moving clock", func(t *testing.T) {
		tok := f.iss.Sign(base.With("exp", now+60))
		mustVerify(t, f.v, tok)
		f.clock.Advance(89 * time.Second) // exp + 29 s: inside the leeway
		mustVerify(t, f.v, tok)
		f.clock.Advance(time.Second)
		mustRefuse(t, f.v, tok, idflow.EUNAUTHORIZED)
	})
}

func TestVerifyIssuer(t *testing.T) {
	f := newFixture(t, nil)
	iss := f.iss.Issuer()
	base := f.base("alice")
	mustVerify(t, f.v, f.iss.Sign(base))
	cases := map[string]any{
		"wrong":          "https://evil.example",
		"prefix":         "https://evil.example/" + iss,
		"prefixed host":  strings.Replace(iss, "://", "://evil.", 1),
		"suffix":         iss + ".evil.example",
		"path suffix":    iss + "/evil",
		"trailing slash": iss + "/",
		"upper case":     strings.ToUpper(iss),
		"scheme case":    strings.Replace(iss, "http://", "HTTP://", 1),
		"https for http": strings.Replace(iss, "http://", "https://", 1),
		"whitespace":     iss + " ",
		"leading space":  " " + iss,
		"empty":          "",
		"null":           nil,
		"array":          []string{iss},
		"number":         42,
		"NUL suffix":     iss + "\x00",
	}
	for name, v := range cases {
		t.Run(name, func(t *testing.T) {
			mustRefuse(t, f.v, f.iss.Sign(base.With("iss", v)), idflow.EUNAUTHORIZED)
		})
	}
	t.Run("missing", func(t *testing.T) { mustRefuse(t, f.v, f.iss.Sign(base.Without("iss")), idflow.EUNAUTHORIZED) })
}

func TestVerifyAudience(t *testing.T) {
	other := "api://other"
	f := newFixture(t, func(c *VerifierConfig) { c.Audiences = append(c.Audiences, "https://idflow.example/mcp") })
	ours := f.iss.Audience()
	base := f.base("alice")
	accept := map[string]struct {
		aud  any
		want []string
	}{
		"string":                  {ours, []string{ours}},
		"array of one":            {[]string{ours}, []string{ours}},
		"array with ours + other": {[]string{other, ours, "api://third"}, []string{ours}},
		"both of ours":            {[]string{ours, "https://idflow.example/mcp"}, []string{ours, "https://idflow.example/mcp"}},
		"second configured":       {"https://idflow.example/mcp", []string{"https://idflow.example/mcp"}},
	}
	for name, c := range accept {
		t.Run("accept/"+name, func(t *testing.T) {
			got := mustVerify(t, f.v, f.iss.Sign(base.With("aud", c.aud)))
			if !slices.Equal(got.Audiences, c.want) {
				t.Fatalf("Audiences = %q, want %q", got.Audiences, c.want)
			}
		})
	}
	refuse := map[string]any{
		"empty string":         "",
		"empty array":          []string{},
		"array of empty":       []string{""},
		"other":                other,
		"array without ours":   []string{other, "api://third"},
		"ours with suffix":     ours + "/",
		"ours upper case":      strings.ToUpper(ours),
		"null":                 nil,
		"number":               1,
		"object":               map[string]string{"aud": ours},
		"array with a number":  []any{ours, 1},
		"nested array":         []any{[]string{ours}},
		"comma-joined":         ours + "," + other,
		"space-joined":         ours + " " + other,
		"issuer as audience":   f.iss.Issuer(),
		"array with null only": []any{nil},
	}
	for name, aud := range refuse {
		t.Run("refuse/"+name, func(t *testing.T) {
			mustRefuse(t, f.v, f.iss.Sign(base.With("aud", aud)), idflow.EUNAUTHORIZED)
		})
	}
	t.Run("refuse/missing", func(t *testing.T) {
		mustRefuse(t, f.v, f.iss.Sign(base.Without("aud")), idflow.EUNAUTHORIZED)
	})
}

func TestVerifyRequiredScope(t *testing.T) {
	f := newFixture(t, func(c *VerifierConfig) { c.RequiredScope = "access_as_user" })
	base := f.base("alice")
	for name, c := range map[string]authtest.Claims{
		"scp":          base.With("scp", "User.Read access_as_user"),
		"scope 9068":   base.With("scope", "openid access_as_user"),
		"scp as array": base.With("scp", []string{"access_as_user"}),
	} {
		t.Run("accept/"+name, func(t *testing.T) { mustVerify(t, f.v, f.iss.Sign(c)) })
	}
	for name, c := range map[string]authtest.Claims{
		"no scope claim":   base,
		"other scope":      base.With("scp", "User.Read"),
		"empty scp":        base.With("scp", ""),
		"prefix of scope":  base.With("scp", "access_as"),
		"superstring":      base.With("scp", "access_as_user_admin"),
		"case":             base.With("scp", "ACCESS_AS_USER"),
		"comma-joined":     base.With("scp", "User.Read,access_as_user"),
		"scope in roles":   base.With("roles", []string{"access_as_user"}),
		"scope elsewhere":  base.With("scopes", "access_as_user"),
		"scp wins, lacks":  base.With("scp", "User.Read").With("scope", "access_as_user"),
		"scope, scp empty": base.With("scp", []string{}).With("scope", "User.Read"),
	} {
		t.Run("refuse/"+name, func(t *testing.T) {
			tok := f.iss.Sign(c)
			err := mustRefuse(t, f.v, tok, idflow.EFORBIDDEN)
			if !errors.Is(err, ErrInsufficientScope) {
				t.Fatalf("err = %v, want ErrInsufficientScope", err)
			}
		})
	}
	t.Run("a bad token without the scope is 401, not 403", func(t *testing.T) {
		mustRefuse(t, f.v, f.iss.Sign(base.With("aud", "api://other")), idflow.EUNAUTHORIZED)
		mustRefuse(t, f.v, f.iss.Sign(base.With("exp", f.clock.Now().Unix()-3600)), idflow.EUNAUTHORIZED)
	})
}

func TestVerifyUserClaimOrder(t *testing.T) {
	cases := []struct {
		name   string
		claims []string
		set    authtest.Claims
		want   string // "" → refused
	}{
		// The test issuer is not an Entra host: sub by default, oid is just a claim.
		{"default: sub, not oid", nil, authtest.Claims{"oid": "oid-1", "sub": "sub-1"}, "sub-1"},
		{"default: sub", nil, authtest.Claims{"sub": "sub-1"}, "sub-1"},
		{"default: oid alone is no user", nil, authtest.Claims{"oid": "oid-1"}, ""},
		{"neither", nil, authtest.Claims{"name": "Alice"}, ""},
		{"both empty", nil, authtest.Claims{"oid": "", "sub": ""}, ""},
		{"oid not a string", nil, authtest.Claims{"oid": 7, "sub": "sub-1"}, ""},
		{"explicit oid, sub: oid wins", []string{"oid", "sub"}, authtest.Claims{"oid": "oid-1", "sub": "sub-1"}, "oid-1"},
		{"explicit oid, sub: sub when oid empty", []string{"oid", "sub"}, authtest.Claims{"oid": "", "sub": "sub-1"}, "sub-1"},
		{"explicit oid, sub: blank oid refused, not skipped", []string{"oid", "sub"}, authtest.Claims{"oid": " ", "sub": "sub-1"}, ""},
		{"custom: sub first", []string{"sub", "oid"}, authtest.Claims{"oid": "oid-1", "sub": "sub-1"}, "sub-1"},
		{"custom claim", []string{"employee_id", "sub"}, authtest.Claims{"employee_id": "E42", "sub": "sub-1"}, "E42"},
		{"custom claim missing → next", []string{"employee_id", "sub"}, authtest.Claims{"sub": "sub-1"}, "sub-1"},
		{"custom claim not a string", []string{"employee_id"}, authtest.Claims{"employee_id": 42, "sub": "sub-1"}, ""},
		{"custom claim wrong case", []string{"employee_id"}, authtest.Claims{"Employee_ID": "E42", "sub": "sub-1"}, ""},
		{"oid wrong case ignored", []string{"oid", "sub"}, authtest.Claims{"OID": "evil", "sub": "sub-1"}, "sub-1"},
		{"oid duplicate in other case", []string{"oid"}, authtest.Claims{"oid": "oid-1", "Oid": "evil"}, "oid-1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(c *VerifierConfig) { c.UserClaims = tc.claims })
			c := f.base("").Without("sub")
			for k, v := range tc.set {
				c[k] = v
			}
			tok := f.iss.Sign(c)
			if tc.want == "" {
				mustRefuse(t, f.v, tok, idflow.EUNAUTHORIZED)
				return
			}
			got := mustVerify(t, f.v, tok)
			if got.Principal.UserID != tc.want || got.Principal.Kind != idflow.KindUser {
				t.Fatalf("UserID = %q (kind %q), want %q", got.Principal.UserID, got.Principal.Kind, tc.want)
			}
		})
	}
}

func TestVerifyTenants(t *testing.T) {
	const t1, t2, t3 = "tenant-one", "tenant-two", "tenant-three"
	t.Run("single-tenant issuer with allowlist", func(t *testing.T) {
		f := newFixture(t, func(c *VerifierConfig) { c.Tenants = []string{t1} })
		base := f.base("alice")
		got := mustVerify(t, f.v, f.iss.Sign(base.With("tid", t1)))
		if got.Principal.TenantID != t1 {
			t.Fatalf("TenantID = %q", got.Principal.TenantID)
		}
		mustRefuse(t, f.v, f.iss.Sign(base.With("tid", t2)), idflow.EUNAUTHORIZED)
		mustRefuse(t, f.v, f.iss.Sign(base), idflow.EUNAUTHORIZED) // no tid
		mustRefuse(t, f.v, f.iss.Sign(base.With("tid", "")), idflow.EUNAUTHORIZED)
		mustRefuse(t, f.v, f.iss.Sign(base.With("tid", strings.ToUpper(t1))), idflow.EUNAUTHORIZED)
		// App-only tokens are held to the same allowlist.
		mustRefuse(t, f.v, f.iss.Sign(base.With("tid", t2).With("idtyp", "app")), idflow.EUNAUTHORIZED)
	})
	t.Run("multi-tenant {tenantid} issuer", func(t *testing.T) {
		f := newFixture(t, func(c *VerifierConfig) { c.Tenants = []string{t1, t2} }, authtest.WithIssuerPath("/{tenantid}/v2.0"))
		if !strings.Contains(f.iss.Issuer(), TenantPlaceholder) {
			t.Fatalf("issuer %q is not a template", f.iss.Issuer())
		}
		base := f.base("alice")
		for _, tid := range []string{t1, t2} {
			got := mustVerify(t, f.v, f.iss.Sign(base.With("iss", f.iss.IssuerFor(tid)).With("tid", tid)))
			if got.Principal.TenantID != tid || got.Principal.Issuer != f.iss.IssuerFor(tid) {
				t.Fatalf("tenant %q: got %+v", tid, got.Principal)
			}
		}
		refuse := map[string]authtest.Claims{
			"unlisted tenant":         base.With("iss", f.iss.IssuerFor(t3)).With("tid", t3),
			"iss names another tid":   base.With("iss", f.iss.IssuerFor(t2)).With("tid", t1),
			"iss of unlisted, tid ok": base.With("iss", f.iss.IssuerFor(t3)).With("tid", t1),
			"no tid":                  base.With("iss", f.iss.IssuerFor(t1)),
			"empty tid":               base.With("iss", f.iss.IssuerFor("")).With("tid", ""),
			"literal template":        base.With("iss", f.iss.Issuer()).With("tid", t1),
			"common":                  base.With("iss", f.iss.IssuerFor("common")).With("tid", "common"),
			"tid with path":           base.With("iss", f.iss.IssuerFor(t1+"/x")).With("tid", t1+"/x"),
		}
		for name, c := range refuse {
			t.Run(name, func(t *testing.T) { mustRefuse(t, f.v, f.iss.Sign(c), idflow.EUNAUTHORIZED) })
		}
	})
	t.Run("multi-tenant without tenants refused at construction", func(t *testing.T) {
		_, err := NewVerifier(VerifierConfig{Issuers: []string{"https://login.microsoftonline.com/{tenantid}/v2.0"}, Audiences: []string{"api://a"}}, NewStaticKeySet())
		if err == nil {
			t.Fatal("NewVerifier accepted a multi-tenant issuer without a tenant allowlist")
		}
	})
}

// entraFixture accepts Entra v1.0 and v2.0 issuers (the real templates; keys
// come from the test issuer's JWKS) for one tenant.
func entraFixture(t *testing.T, mutate func(*VerifierConfig)) *fixture {
	return newFixture(t, func(c *VerifierConfig) {
		c.Issuers = []string{authtest.EntraV1IssuerTemplate, authtest.EntraV2IssuerTemplate}
		c.Tenants = []string{authtest.DefaultTenantID}
		if mutate != nil {
			mutate(c)
		}
	})
}

func TestVerifyEntraUserTokens(t *testing.T) {
	f := entraFixture(t, nil)
	u := authtest.EntraUser{
		ObjectID: "9f3b1a2c-0000-4000-8000-00000000a11c", Name: "Alice Example",
		PreferredUsername: "alice@contoso.example", UPN: "alice.upn@contoso.example",
		Roles: []string{"Reader", "admin"}, Groups: []string{"g-eng", "g-all"},
		Scopes: []string{"access_as_user", "Files.Read"}, ClientID: "client-web",
	}
	exp := f.clock.Now().Add(time.Hour)
	cases := []struct {
		name      string
		claims    authtest.Claims
		email     string
		issuer    string
		clientID  string
		wantScope []string
	}{
		{"v2.0", f.iss.EntraV2User(u), "alice@contoso.example", "https://login.microsoftonline.com/" + authtest.DefaultTenantID + "/v2.0", "client-web", u.Scopes},
		{"v2.0 idtyp=user", f.iss.EntraV2User(func() authtest.EntraUser { u := u; u.IDTyp = true; return u }()), "alice@contoso.example", "https://login.microsoftonline.com/" + authtest.DefaultTenantID + "/v2.0", "client-web", u.Scopes},
		{"v2.0 no preferred_username → upn", f.iss.EntraV2User(u).Without("preferred_username"), "alice.upn@contoso.example", "https://login.microsoftonline.com/" + authtest.DefaultTenantID + "/v2.0", "client-web", u.Scopes},
		{"v1.0", f.iss.EntraV1User(u), "alice.upn@contoso.example", "https://sts.windows.net/" + authtest.DefaultTenantID + "/", "client-web", u.Scopes},
		{"v1.0 email only", f.iss.EntraV1User(u).Without("upn").With("email", "alice.mail@contoso.example"), "alice.mail@contoso.example", "https://sts.windows.net/" + authtest.DefaultTenantID + "/", "client-web", u.Scopes},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := mustVerify(t, f.v, f.iss.Sign(tc.claims)).Principal
			want := idflow.Principal{
				UserID: u.ObjectID, TenantID: authtest.DefaultTenantID, Email: tc.email, Name: "Alice Example",
				Roles: u.Roles, Groups: u.Groups, Scopes: tc.wantScope, Issuer: tc.issuer,
				Kind: idflow.KindUser, AuthMethod: idflow.AuthBearer, ClientID: tc.clientID,
			}
			if !p.ExpiresAt.Equal(exp) {
				t.Errorf("ExpiresAt = %v, want %v", p.ExpiresAt, exp)
			}
			p.ExpiresAt = time.Time{}
			if !principalEqual(p, want) {
				t.Fatalf("Principal =\n %+v\nwant\n %+v", p, want)
			}
			if id, err := p.Owner(); err != nil || id != u.ObjectID {
				t.Fatalf("Owner() = %q, %v", id, err)
			}
		})
	}
	t.Run("sub is not the user id when oid is present", func(t *testing.T) {
		c := f.iss.EntraV2User(u)
		p := mustVerify(t, f.v, f.iss.Sign(c)).Principal
		if p.UserID == c["sub"] {
			t.Fatal("user id is the pairwise sub")
		}
	})
	t.Run("other tenant refused", func(t *testing.T) {
		o := u
		o.TenantID = "00000000-0000-0000-0000-00000000beef"
		mustRefuse(t, f.v, f.iss.Sign(f.iss.EntraV2User(o)), idflow.EUNAUTHORIZED)
		mustRefuse(t, f.v, f.iss.Sign(f.iss.EntraV1User(o)), idflow.EUNAUTHORIZED)
	})
	t.Run("v1 token with v2 issuer of another tenant refused", func(t *testing.T) {
		c := f.iss.EntraV1User(u).With("iss", "https://login.microsoftonline.com/00000000-0000-0000-0000-00000000beef/v2.0")
		mustRefuse(t, f.v, f.iss.Sign(c), idflow.EUNAUTHORIZED)
	})
	t.Run("empty lists are empty, never nil", func(t *testing.T) {
		bare := u
		bare.Roles, bare.Groups = nil, nil
		p := mustVerify(t, f.v, f.iss.Sign(f.iss.EntraV2User(bare))).Principal
		if p.Roles == nil || p.Groups == nil || p.Scopes == nil || len(p.Roles)+len(p.Groups) != 0 {
			t.Fatalf("Roles %#v Groups %#v Scopes %#v", p.Roles, p.Groups, p.Scopes)
		}
	})
	t.Run("group overage reported, never guessed", func(t *testing.T) {
		for name, c := range map[string]authtest.Claims{
			"v2": authtest.GroupOverage(f.iss.EntraV2User(u)),
			"v1": authtest.GroupOverage(f.iss.EntraV1User(u)),
		} {
			if _, ok := c["groups"]; ok {
				t.Fatal("GroupOverage left the groups claim")
			}
			p := mustVerify(t, f.v, f.iss.Sign(c)).Principal
			if !p.GroupsOverage || len(p.Groups) != 0 {
				t.Fatalf("%s: GroupsOverage %v, Groups %q", name, p.GroupsOverage, p.Groups)
			}
		}
		p := mustVerify(t, f.v, f.iss.Sign(f.iss.EntraV2User(u))).Principal
		if p.GroupsOverage {
			t.Fatal("GroupsOverage set without overage")
		}
		p = mustVerify(t, f.v, f.iss.Sign(f.iss.EntraV2User(u).Without("groups").With("hasgroups", true))).Principal
		if !p.GroupsOverage || len(p.Groups) != 0 {
			t.Fatalf("hasgroups: GroupsOverage %v, Groups %q", p.GroupsOverage, p.Groups)
		}
	})
}

func principalEqual(a, b idflow.Principal) bool {
	return a.UserID == b.UserID && a.TenantID == b.TenantID && a.Email == b.Email && a.Name == b.Name &&
		slices.Equal(a.Roles, b.Roles) && slices.Equal(a.Groups, b.Groups) && a.GroupsOverage == b.GroupsOverage &&
		slices.Equal(a.Scopes, b.Scopes) && a.Issuer == b.Issuer && a.Kind == b.Kind &&
		a.AuthMethod == b.AuthMethod && a.ClientID == b.ClientID && a.ExpiresAt.Equal(b.ExpiresAt)
}

func TestVerifyAppOnlyTokens(t *testing.T) {
	f := entraFixture(t, func(c *VerifierConfig) {
		c.Issuers = append(c.Issuers, "https://issuer.example") // RFC 9068 tokens below use it
		c.RequiredScope = "access_as_user"                      // delegated only: app tokens are not held to it
	})
	a := authtest.EntraApp{ClientID: "daemon-client", ObjectID: "sp-object-1", Roles: []string{"idflow.internal"}}
	rfc := func(sub, client, scope string) authtest.Claims {
		return f.iss.RFC9068(sub, client, scope).With("iss", "https://issuer.example").With("tid", authtest.DefaultTenantID)
	}
	cases := []struct {
		name     string
		claims   authtest.Claims
		userID   string
		clientID string
	}{
		{"v2.0 idtyp=app", f.iss.EntraV2App(func() authtest.EntraApp { a := a; a.IDTyp = true; return a }()), "sp-object-1", "daemon-client"},
		{"v2.0 no scp, no idtyp", f.iss.EntraV2App(a), "sp-object-1", "daemon-client"},
		{"v1.0 no scp, no idtyp", f.iss.EntraV1App(a), "sp-object-1", "daemon-client"},
		{"v1.0 idtyp=app", f.iss.EntraV1App(a).With("idtyp", "app"), "sp-object-1", "daemon-client"},
		{"idtyp=app even with scp", f.iss.EntraV2App(a).With("idtyp", "app").With("scp", "access_as_user"), "sp-object-1", "daemon-client"},
		{"RFC 9068 sub == client_id", rfc("svc-client", "svc-client", ""), "svc-client", "svc-client"},
		{"RFC 9068 sub == client_id with scope", rfc("svc-client", "svc-client", "stats.read"), "svc-client", "svc-client"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := mustVerify(t, f.v, f.iss.Sign(tc.claims)).Principal
			if p.Kind != idflow.KindApp || p.UserID != tc.userID || p.ClientID != tc.clientID {
				t.Fatalf("Kind %q UserID %q ClientID %q", p.Kind, p.UserID, p.ClientID)
			}
			if _, err := p.Owner(); err == nil {
				t.Fatal("an app-only Principal can own user data")
			}
		})
	}
	users := []struct {
		name   string
		claims authtest.Claims
		scopes []string
	}{
		{"v2.0 scp", f.iss.EntraV2User(authtest.EntraUser{ObjectID: "u-1"}), []string{"access_as_user"}},
		{"idtyp=user without scp is still a user, held to the scope", nil, nil},
		{"RFC 9068 user with scope", rfc("user-9", "web-client", "openid access_as_user profile"), []string{"openid", "access_as_user", "profile"}},
	}
	for _, tc := range users {
		if tc.claims == nil {
			t.Run(tc.name, func(t *testing.T) {
				c := f.iss.EntraV2App(a).With("idtyp", "user")
				err := mustRefuse(t, f.v, f.iss.Sign(c), idflow.EFORBIDDEN)
				if !errors.Is(err, ErrInsufficientScope) {
					t.Fatalf("err = %v", err)
				}
			})
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			p := mustVerify(t, f.v, f.iss.Sign(tc.claims)).Principal
			if p.Kind != idflow.KindUser || !slices.Equal(p.Scopes, tc.scopes) {
				t.Fatalf("Kind %q Scopes %q", p.Kind, p.Scopes)
			}
		})
	}
	t.Run("app token without any subject refused", func(t *testing.T) {
		// idtyp=app keeps it an app token: without it, a token naming
		// no client is an ID token (idtoken_test.go).
		c := f.iss.EntraV2App(a).With("idtyp", "app").Without("oid", "sub", "azp")
		err := mustRefuse(t, f.v, f.iss.Sign(c), idflow.EUNAUTHORIZED)
		if errors.Is(err, ErrIDToken) {
			t.Fatalf("err = %v; want the missing subject", err)
		}
	})
}

func TestVerifyErrorsNeverContainTheToken(t *testing.T) {
	// A token whose every claim is echo-bait: values that an error message
	// quoting the payload or a claim would reveal.
	f := newFixture(t, func(c *VerifierConfig) { c.RequiredScope = "needed" })
	secret := "SECRET-" + strings.Repeat("x", 40)
	base := f.base(secret).With("name", secret).With("scp", secret)
	for name, tok := range map[string]string{
		"wrong aud":   f.iss.Sign(base.With("aud", secret)),
		"wrong iss":   f.iss.Sign(base.With("iss", secret)),
		"bad exp":     f.iss.Sign(base.With("exp", secret)),
		"bad kid":     f.iss.Sign(base, authtest.WithKID(secret)),
		"bad alg":     f.iss.Sign(base, authtest.WithAlg(secret)),
		"no scope":    f.iss.Sign(base),
		"not JSON":    f.iss.Sign([]byte(secret)),
		"tampered":    f.iss.Sign(base, authtest.WithTamperedPayload(func(p []byte) []byte { return append(p, ' ') })),
		"bad header":  b64([]byte(`{"alg":"`+secret+`"`)) + "." + b64([]byte(secret)) + "." + b64([]byte(secret)),
		"bad base64":  secret + "." + secret + "." + secret,
		"five parts":  secret + "." + secret + "." + secret + "." + secret + "." + secret,
		"oversized":   secret + "." + strings.Repeat(secret, MaxTokenBytes/len(secret)+1) + "." + secret,
		"crit":        f.iss.Sign(base, authtest.WithHeader("crit", []string{secret}), authtest.WithHeader(secret, 1)),
		"alg none":    authtest.Compact(map[string]any{"alg": "none"}, base, nil),
		"user claims": f.iss.Sign(base.Without("sub")),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := f.v.Verify(context.Background(), tok)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, text := range []string{err.Error(), idflow.ErrorMessage(err)} {
				if strings.Contains(text, secret) {
					t.Fatalf("error text echoes token content: %.200q", text)
				}
			}
			assertNoToken(t, err, tok)
		})
	}
}
