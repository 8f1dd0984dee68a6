package auth

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"slices"
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

// BenchmarkUncachedOverRawRSA alternates the two above operation by
// operation and compares their median latencies, so that a busy machine
// slows both alike and a preempted operation does not count: the ratio
// docs/BENCHMARKS.md holds to ≤ 1.2.
func BenchmarkUncachedOverRawRSA(b *testing.B) {
	v, iss, tok := benchSetup(b, -1)
	pub := iss.Key("rsa-bench").Public().(*rsa.PublicKey)
	dot := strings.LastIndexByte(tok, '.')
	input := []byte(tok[:dot])
	sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var lat [2][]time.Duration
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		if i%2 == 0 {
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
		} else {
			sum := sha256.Sum256(input)
			if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
				b.Fatal(err)
			}
		}
		lat[i%2] = append(lat[i%2], time.Since(start))
	}
	if len(lat[1]) == 0 {
		return
	}
	uncached, raw := median(lat[0]), median(lat[1])
	b.ReportMetric(float64(uncached.Nanoseconds())/1e3, "uncached-p50-µs")
	b.ReportMetric(float64(raw.Nanoseconds())/1e3, "raw-p50-µs")
	b.ReportMetric(float64(uncached)/float64(raw), "ratio")
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
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

// BenchmarkReaders sets the two readers of a token's JSON side by side:
// idflow's (jsonreader.go) and json/v2 (jsonv2_test.go), over the header
// and the claims of the benchmark token. docs/BENCHMARKS.md says why the
// first is kept.
func BenchmarkReaders(b *testing.B) {
	_, _, tok := benchSetup(b, -1)
	jws, err := parseCompactJWS(tok)
	if err != nil {
		b.Fatal(err)
	}
	hdr, err := b64url.DecodeString(tok[:strings.IndexByte(tok, '.')])
	if err != nil {
		b.Fatal(err)
	}
	readers := []struct {
		name string
		read func() error
	}{
		{"header/idflow", func() error { var t compactJWS; return parseJWSHeader(hdr, &t) }},
		{"header/jsonv2", func() error { _, _, err := v2JWSHeader(hdr); return err }},
		{"claims/idflow", func() error { _, err := parseClaims(jws.payload); return err }},
		{"claims/jsonv2", func() error { _, err := v2Claims(jws.payload); return err }},
	}
	for _, r := range readers {
		b.Run(r.name, func(b *testing.B) {
			b.ReportAllocs()
			start := cpuTime(b)
			for b.Loop() {
				if err := r.read(); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, start)
		})
	}
}
