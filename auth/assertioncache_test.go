package auth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

// assertionFixture: a Verifier with a small cache, a Signer and an issuer
// sharing one clock that the test moves.
type assertionFixture struct {
	iss    *authtest.Issuer
	a      *Authenticator
	signer *Signer
	check  *Verifier // verifies what signer signs, for audience "https://app.test"
	mu     sync.Mutex
	now    time.Time
}

func (f *assertionFixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *assertionFixture) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

func newAssertionFixture(t *testing.T, cacheSize int) *assertionFixture {
	t.Helper()
	f := &assertionFixture{now: time.Now()}
	f.iss = authtest.NewIssuer(t, authtest.WithClock(f.clock))
	v, err := NewVerifier(VerifierConfig{Issuers: []string{f.iss.Issuer()}, Audiences: []string{f.iss.Audience()},
		CacheSize: cacheSize, Now: f.clock}, NewStaticKeySet(f.iss.PublicJWKs()...))
	if err != nil {
		t.Fatal(err)
	}
	f.signer = newSigner(t)
	f.signer.now = f.clock
	f.a = New(Config{Bearer: v})
	f.check, err = NewVerifier(VerifierConfig{Issuers: []string{proxyIssuer}, Audiences: []string{"https://app.test"},
		CacheSize: -1, Now: f.clock}, f.signer.KeySet())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// validate authenticates a forward-auth question carrying token and
// answers its assertion, checked to state exactly the token's user.
func (f *assertionFixture) validate(t *testing.T, token, wantUser string) string {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/auth/validate", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	p, err := f.a.Authenticate(r, nil)
	if err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	jwt, err := f.a.Assertion(r, p, f.signer, "https://app.test")
	if err != nil {
		t.Fatalf("assertion: %v", err)
	}
	tok, err := f.check.Verify(context.Background(), jwt)
	if err != nil {
		t.Fatalf("the assertion does not verify: %v", err)
	}
	if tok.Principal.UserID != wantUser {
		t.Fatalf("the assertion states %q, want %q", tok.Principal.UserID, wantUser)
	}
	return jwt
}

// One assertion per token while it is fresh: a proxy asking again about the
// same token gets the same one, never another token's (another user's, or
// the same user's other token), and a new one in the last fifth of its life.
func TestAssertionCachedPerToken(t *testing.T) {
	f := newAssertionFixture(t, 0)
	alice := f.iss.Token(f.iss.RFC9068("alice", "client-a", ""))
	alice2 := f.iss.Token(f.iss.RFC9068("alice", "client-a", "")) // another token of alice (its own jti)
	bob := f.iss.Token(f.iss.RFC9068("bob", "client-a", ""))

	a1 := f.validate(t, alice, "alice")
	if again := f.validate(t, alice, "alice"); again != a1 {
		t.Fatal("the same token got a new assertion while the first was fresh")
	}
	if b := f.validate(t, bob, "bob"); b == a1 {
		t.Fatal("bob got alice's assertion")
	}
	if other := f.validate(t, alice2, "alice"); other == a1 {
		t.Fatal("another token shares the first token's assertion: the cache is keyed by token")
	}
	// 47 s of 60: still four fifths of its life left. 49 s: renewed.
	f.advance(47 * time.Second)
	if again := f.validate(t, alice, "alice"); again != a1 {
		t.Fatal("renewed before the last fifth of its lifetime")
	}
	f.advance(2 * time.Second)
	a2 := f.validate(t, alice, "alice")
	if a2 == a1 {
		t.Fatal("an assertion with less than a fifth of its life left was served again")
	}
	if again := f.validate(t, alice, "alice"); again != a2 {
		t.Fatal("the renewed assertion was not kept")
	}
	// Another audience or another signer never gets the cached one.
	r := httptest.NewRequest(http.MethodGet, "/auth/validate", nil)
	r.Header.Set("Authorization", "Bearer "+alice)
	p, err := f.a.Authenticate(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if other, err := f.a.Assertion(r, p, f.signer, "https://other.test"); err != nil || other == a2 {
		t.Fatalf("another audience got the cached assertion (err %v)", err)
	}
	if other, err := f.a.Assertion(r, p, newSigner(t), "https://app.test"); err != nil || other == a2 {
		t.Fatalf("another signer got the cached assertion (err %v)", err)
	}
}

// The assertion lives and dies with the token's entry in the verified-token
// cache: an evicted or expired token is verified again and gets a new one;
// a token that no longer verifies gets none.
func TestAssertionGoesWithTheVerifiedToken(t *testing.T) {
	f := newAssertionFixture(t, 1) // one entry: the next token evicts it
	alice := f.iss.Token(f.iss.RFC9068("alice", "client-a", ""))
	bob := f.iss.Token(f.iss.RFC9068("bob", "client-a", ""))
	a1 := f.validate(t, alice, "alice")
	f.validate(t, bob, "bob") // evicts alice's entry
	if again := f.validate(t, alice, "alice"); again == a1 {
		t.Fatal("an evicted token's assertion was served")
	}

	// Without a cache, every question is signed anew.
	f = newAssertionFixture(t, -1)
	alice = f.iss.Token(f.iss.RFC9068("alice", "client-a", ""))
	if f.validate(t, alice, "alice") == f.validate(t, alice, "alice") {
		t.Fatal("an assertion was reused without a verified-token cache")
	}

	// A token that expires: refused, and with it its cached assertion.
	f = newAssertionFixture(t, 0)
	short := f.iss.Token(f.iss.RFC9068("alice", "client-a", "").With("exp", f.clock().Add(20*time.Second).Unix()))
	f.validate(t, short, "alice")
	f.advance(20*time.Second + 30*time.Second) // past exp and the verifier's 30 s leeway
	r := httptest.NewRequest(http.MethodGet, "/auth/validate", nil)
	r.Header.Set("Authorization", "Bearer "+short)
	if _, err := f.a.Authenticate(r, nil); idflow.ErrorCode(err) != idflow.EUNAUTHORIZED {
		t.Fatalf("an expired token was accepted: %v", err)
	}
}

// Only the entry of the token that authenticated the request is used: a
// Principal that does not match the Authorization header's token (another
// source, or a header changed after authentication) gets a fresh assertion
// of its own identity, never the header token's.
func TestAssertionNeverTakesAnotherPrincipals(t *testing.T) {
	f := newAssertionFixture(t, 0)
	alice := f.iss.Token(f.iss.RFC9068("alice", "client-a", ""))
	aliceAssertion := f.validate(t, alice, "alice")

	r := httptest.NewRequest(http.MethodGet, "/auth/validate", nil)
	r.Header.Set("Authorization", "Bearer "+alice)
	for _, p := range []idflow.Principal{
		authtest.User("mallory", "t-one"), // AuthBearer, but not the header token's user
		{UserID: "alice", TenantID: "t-one", Kind: idflow.KindUser, AuthMethod: idflow.AuthSession, Scopes: []string{}},
		{UserID: "alice", TenantID: "t-one", Kind: idflow.KindUser, AuthMethod: idflow.AuthProxyHeader, Scopes: []string{}},
	} {
		jwt, err := f.a.Assertion(r, p, f.signer, "https://app.test")
		if err != nil {
			t.Fatal(err)
		}
		if jwt == aliceAssertion {
			t.Fatalf("%s/%s got the cached assertion of alice's token", p.UserID, p.AuthMethod)
		}
		tok, err := f.check.Verify(context.Background(), jwt)
		if err != nil || tok.Principal.UserID != p.UserID {
			t.Fatalf("%s/%s: assertion states %q (err %v)", p.UserID, p.AuthMethod, tok.Principal.UserID, err)
		}
	}
}
