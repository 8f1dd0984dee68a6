package connections_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/connections"
	"github.com/idflow/idflow/internal/testsvc"
)

type clock struct{ off atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// TestOIDCProviderDownstream runs the connect flow, refresh with rotation
// and revocation against an independent OpenID provider (npm
// oidc-provider) in the downstream role, with a resource server that trusts
// only that provider's tokens.
func TestOIDCProviderDownstream(t *testing.T) {
	const audience = "https://downstream.idflow.test"
	const public = "https://idflow.example"
	op := testsvc.StartOIDCProvider(t, testsvc.OIDCProviderOptions{Audiences: []string{audience},
		RedirectURIs: []string{public + "/api/v1/connections/op/callback"}})
	ep := op.Endpoints(t)
	rs := op.StartResourceServer(t, audience)
	reg := registry(t, fmt.Sprintf(`{"providers": [{"name": "op", "authorize_url": %q, "token_url": %q,
		"revocation_url": %q, "client_id": %q, "client_secret_env": "OP_SECRET", "scopes": ["openid", "api"],
		"api_base_url": %q}]}`, ep.Authorization, ep.Token, ep.Revocation, testsvc.OIDCDownstreamClientID, rs.URL),
		map[string]string{"OP_SECRET": testsvc.OIDCDownstreamClientSecret})
	clk := &clock{}
	db := openStore(t)
	keys := keyring(t)
	audit := &auditRec{}
	m, err := connections.New(connections.Config{PublicURL: public, Providers: reg, Store: db, Keys: keys,
		Now: clk.Now, Audit: audit})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	authorizeURL, err := m.Connect(ctx, alice, "op")
	if err != nil {
		t.Fatal(err)
	}
	cb := op.Browse(t, authorizeURL, "alice")
	if cb == nil || cb.String()[:len(public)] != public || cb.Query().Get("code") == "" {
		t.Fatalf("the provider redirected to %v", cb)
	}
	if _, err := m.Callback(ctx, bob, "op", cb.Query()); idflow.ErrorCode(err) != idflow.ENOTFOUND {
		t.Fatalf("bob completing alice's flow: %v", err)
	}
	c, err := m.Callback(ctx, alice, "op", cb.Query())
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != idflow.ConnectionActive || c.ExpiresAt == nil {
		t.Fatalf("connection %+v", c)
	}

	whoami := func(p idflow.Principal) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "/whoami", nil)
		resp, err := m.Do(idflow.NewContext(ctx, p), p, "op", req)
		if err != nil {
			t.Fatalf("Do as %s: %v", p.UserID, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var out map[string]any
		_ = json.Unmarshal(b, &out)
		return resp.StatusCode, out
	}
	if status, who := whoami(alice); status != http.StatusOK || who["sub"] != "alice" || who["client_id"] != testsvc.OIDCDownstreamClientID {
		t.Fatalf("whoami: %d %v", status, who)
	}
	rt1 := storedRefreshToken(t, db, keys, alice, "op")
	if rt1 == "" || !op.Active(t, rt1, testsvc.OIDCDownstreamClientID, testsvc.OIDCDownstreamClientSecret) {
		t.Fatal("no active refresh token stored")
	}

	// Within 5 minutes of expiry: one refresh, rotated, persisted.
	clk.Advance(56 * time.Minute)
	if status, who := whoami(alice); status != http.StatusOK || who["sub"] != "alice" {
		t.Fatalf("whoami after refresh: %d %v", status, who)
	}
	seen := rs.Seen()
	if len(seen) != 2 || seen[0] == seen[1] {
		t.Fatalf("the API saw %d calls; the refreshed call must carry a new access token", len(seen))
	}
	rt2 := storedRefreshToken(t, db, keys, alice, "op")
	if rt2 == "" || rt2 == rt1 {
		t.Fatal("the rotated refresh token was not stored")
	}
	if op.Active(t, rt1, testsvc.OIDCDownstreamClientID, testsvc.OIDCDownstreamClientSecret) {
		t.Fatal("the provider did not rotate the refresh token")
	}
	if !op.Active(t, rt2, testsvc.OIDCDownstreamClientID, testsvc.OIDCDownstreamClientSecret) {
		t.Fatal("the stored refresh token is not active")
	}

	// Disconnect revokes at the provider, then forgets.
	if err := m.Disconnect(ctx, alice, "op"); err != nil {
		t.Fatal(err)
	}
	if op.Active(t, rt2, testsvc.OIDCDownstreamClientID, testsvc.OIDCDownstreamClientSecret) {
		t.Fatal("the refresh token is still active after disconnect")
	}
	if list, _ := m.ListConnections(ctx, alice); len(list) != 0 {
		t.Fatalf("after disconnect: %+v", list)
	}
	if !audit.has("alice connection.delete connection/op ok") {
		t.Fatalf("audit %v", audit.events)
	}
}

// storedRefreshToken opens p's sealed row, as a test oracle.
func storedRefreshToken(t *testing.T, store idflow.ConnectionStore, keys interface {
	Open(userID, provider, keyID string, ct []byte) ([]byte, error)
}, p idflow.Principal, provider string) string {
	t.Helper()
	sc, err := store.GetCredential(context.Background(), p, provider)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := keys.Open(p.UserID, provider, sc.KeyID, sc.Ciphertext)
	if err != nil {
		t.Fatal(err)
	}
	var pl struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(plain, &pl); err != nil {
		t.Fatal(err)
	}
	return pl.RefreshToken
}
