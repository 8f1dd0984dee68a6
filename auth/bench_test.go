package auth

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/idflow/idflow/auth/authtest"
)

// benchSetup returns a verifier over a static key set holding the issuer's
// RS256 key, and a realistic Entra v2.0 user token signed by it.
func benchSetup(b *testing.B, cacheSize int) (*Verifier, *authtest.Issuer, string) {
	b.Helper()
	now := time.Unix(1_750_000_000, 0)
	iss := authtest.NewIssuer(b, authtest.WithClock(func() time.Time { return now }),
		authtest.WithKeys(authtest.NewKey(b, jose.RS256, "rsa-bench")))
	v, err := NewVerifier(VerifierConfig{
		Issuers:   []string{authtest.EntraV2IssuerTemplate},
		Audiences: []string{iss.Audience()},
		Tenants:   []string{authtest.DefaultTenantID},
		CacheSize: cacheSize,
		Now:       func() time.Time { return now },
	}, NewStaticKeySet(iss.PublicJWKs()...))
	if err != nil {
		b.Fatal(err)
	}
	tok := iss.Sign(iss.EntraV2User(authtest.EntraUser{
		ObjectID: "00000000-0000-0000-0000-0000000000a1", Name: "Alice Example",
		PreferredUsername: "alice@contoso.example", Roles: []string{"reader"},
		Groups: []string{"g-1", "g-2"}, Scopes: []string{"access_as_user", "Files.Read"},
	}))
	if _, err := v.Verify(context.Background(), tok); err != nil {
		b.Fatalf("setup token does not verify: %v", err)
	}
	return v, iss, tok
}

func BenchmarkVerifyCached(b *testing.B) {
	v, _, tok := benchSetup(b, 0)
	ctx := context.Background()
	b.ReportAllocs()
	start := cpuTime(b)
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}

func BenchmarkVerifyUncachedRS256(b *testing.B) {
	v, _, tok := benchSetup(b, -1)
	ctx := context.Background()
	b.ReportAllocs()
	start := cpuTime(b)
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}

// BenchmarkRawRSAVerify is the floor for BenchmarkVerifyUncachedRS256: the
// same key, the same signing input, only SHA-256 and PKCS #1 v1.5.
func BenchmarkRawRSAVerify(b *testing.B) {
	_, iss, tok := benchSetup(b, -1)
	pub := iss.Key("rsa-bench").Public().(*rsa.PublicKey)
	dot := strings.LastIndexByte(tok, '.')
	input := []byte(tok[:dot])
	sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	start := cpuTime(b)
	for b.Loop() {
		sum := sha256.Sum256(input)
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}

// reportCPU adds cpu-ns/op: the process's CPU time per operation since
// start (GC included), which docs/BENCHMARKS.md compares on a shared
// machine where wall time is mostly waiting for a core.
func reportCPU(b *testing.B, start time.Duration) {
	if start > 0 {
		b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
	}
}

// The pieces of the uncached path, to see where its overhead goes.

func BenchmarkParseCompactJWS(b *testing.B) {
	_, _, tok := benchSetup(b, -1)
	b.ReportAllocs()
	start := cpuTime(b)
	for b.Loop() {
		if _, err := parseCompactJWS(tok); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}

func BenchmarkCheckClaims(b *testing.B) {
	v, _, tok := benchSetup(b, -1)
	jws, err := parseCompactJWS(tok)
	if err != nil {
		b.Fatal(err)
	}
	now := v.cfg.Now()
	b.ReportAllocs()
	start := cpuTime(b)
	for b.Loop() {
		if _, err := v.checkClaims(jws.payload, now); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}
