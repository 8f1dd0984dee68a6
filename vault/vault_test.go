package vault_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/vault"
)

var (
	alice = authtest.User("alice", "t-one")
	bob   = authtest.User("bob", "t-one")
)

func rawKey(b byte) []byte { return bytes.Repeat([]byte{b}, vault.KeySize) }

func ring(t *testing.T, keys ...[]byte) *vault.Keyring {
	t.Helper()
	k, err := vault.NewKeyring(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// wantOpenRefused checks that Open failed with cause and that the error
// shows neither the plaintext nor a key.
func wantOpenRefused(t *testing.T, plain []byte, err error, cause error, keys ...[]byte) {
	t.Helper()
	if err == nil {
		t.Fatalf("Open succeeded (%q), want %v", plain, cause)
	}
	if !errors.Is(err, cause) {
		t.Fatalf("Open error %v, want %v", err, cause)
	}
	var e *idflow.Error
	if !errors.As(err, &e) || e.Message == "" {
		t.Fatalf("Open error %v is not an idflow.Error with a message", err)
	}
	for _, k := range keys {
		for _, form := range []string{string(k), base64.StdEncoding.EncodeToString(k)} {
			if strings.Contains(err.Error(), form) {
				t.Fatalf("the error shows a key: %v", err)
			}
		}
	}
	if strings.Contains(err.Error(), "top secret") {
		t.Fatalf("the error shows the plaintext: %v", err)
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	k := ring(t, rawKey(1))
	plain := []byte(`{"access_token":"top secret"}`)
	id, ct, err := k.Seal("alice", "github", plain)
	if err != nil {
		t.Fatal(err)
	}
	if id != vault.KeyID(rawKey(1)) || id != k.SealingKeyID() || len(id) != 16 {
		t.Fatalf("key id %q, want the 16-hex-digit id of the sealing key", id)
	}
	if bytes.Contains(ct, []byte("top secret")) || ct[0] != 1 || len(ct) != 1+12+len(plain)+16 {
		t.Fatalf("ciphertext %x: want version 1, a 12-byte nonce, no plaintext, a 16-byte tag", ct)
	}
	got, err := k.Open("alice", "github", id, ct)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	// Fresh nonces: the same plaintext never seals alike.
	_, ct2, _ := k.Seal("alice", "github", plain)
	if bytes.Equal(ct[1:13], ct2[1:13]) || bytes.Equal(ct, ct2) {
		t.Fatal("two seals share a nonce")
	}
	if _, _, err := k.Seal("", "github", plain); err == nil {
		t.Fatal("sealed for no user")
	}
}

func TestOpenRefusesTampering(t *testing.T) {
	k := ring(t, rawKey(1))
	plain := []byte("top secret refresh token")
	id, ct, _ := k.Seal("alice", "github", plain)
	for _, c := range []struct {
		name string
		i    int
	}{{"version", 0}, {"nonce", 5}, {"ciphertext", 14}, {"tag", len(ct) - 1}} {
		bad := bytes.Clone(ct)
		bad[c.i] ^= 0x01
		got, err := k.Open("alice", "github", id, bad)
		wantOpenRefused(t, got, err, vault.ErrAuthentication, rawKey(1))
	}
	got, err := k.Open("alice", "github", id, ct[:20])
	wantOpenRefused(t, got, err, vault.ErrAuthentication)
	got, err = k.Open("alice", "github", id, append(bytes.Clone(ct), 0))
	wantOpenRefused(t, got, err, vault.ErrAuthentication)
}

func TestOpenRefusesMovedCiphertext(t *testing.T) {
	k := ring(t, rawKey(1))
	id, ct, _ := k.Seal("alice", "github", []byte("top secret"))
	for _, c := range []struct{ user, provider string }{
		{"bob", "github"},   // moved to another user's row
		{"alice", "gitlab"}, // moved to another provider
		{"aliceg", "ithub"}, // the same bytes, split elsewhere: the length prefixes tell them apart
		{"alice", "github\x00"},
		{"", "alicegithub"},
	} {
		got, err := k.Open(c.user, c.provider, id, ct)
		wantOpenRefused(t, got, err, vault.ErrAuthentication)
	}
}

// TestStoreRowMovedToAnotherUser copies alice's sealed row into bob's: the
// vault refuses to open it for bob.
func TestStoreRowMovedToAnotherUser(t *testing.T) {
	ctx := t.Context()
	w := newWorld(t, nil)
	w.connect(t, alice, time.Hour)
	sc, _ := w.stored(t, alice)
	if _, err := w.db.PutCredential(ctx, bob, sc); err != nil { // what a stolen database write looks like
		t.Fatal(err)
	}
	tok, err := w.v.Get(ctx, bob, "fake")
	if !errors.Is(err, vault.ErrAuthentication) || tok.AccessToken != "" {
		t.Fatalf("bob's Get of alice's moved ciphertext = %v, %v; want ErrAuthentication", tok, err)
	}
	if strings.Contains(err.Error(), "at-alice") {
		t.Fatalf("the error shows alice's token: %v", err)
	}
	if got, err := w.v.Get(ctx, alice, "fake"); err != nil || got.AccessToken != "at-alice-1" {
		t.Fatalf("alice's own Get = %v, %v", got.AccessToken, err)
	}
}

func TestOpenRefusesWrongKey(t *testing.T) {
	a, b := rawKey(1), rawKey(2)
	id, ct, _ := ring(t, a).Seal("alice", "github", []byte("top secret"))
	got, err := ring(t, b).Open("alice", "github", id, ct)
	wantOpenRefused(t, got, err, vault.ErrUnknownKey, a, b)
	if !strings.Contains(err.Error(), id) {
		t.Fatalf("the error does not name the key id %s: %v", id, err)
	}
	// A ciphertext relabelled with the id of a key that did not seal it.
	got, err = ring(t, b).Open("alice", "github", vault.KeyID(b), ct)
	wantOpenRefused(t, got, err, vault.ErrAuthentication, a, b)
}

func TestKeyRotation(t *testing.T) {
	a, b := rawKey(1), rawKey(2)
	oldID, oldCT, _ := ring(t, a).Seal("alice", "github", []byte("sealed with A"))

	rotated := ring(t, b, a) // B added first: B seals, both open
	if got, err := rotated.Open("alice", "github", oldID, oldCT); err != nil || string(got) != "sealed with A" {
		t.Fatalf("old ciphertext after rotation: %q, %v", got, err)
	}
	newID, newCT, _ := rotated.Seal("alice", "github", []byte("sealed with B"))
	if newID != vault.KeyID(b) || newID == oldID {
		t.Fatalf("new seals use key %s, want B's %s", newID, vault.KeyID(b))
	}
	if got, err := ring(t, b).Open("alice", "github", newID, newCT); err != nil || string(got) != "sealed with B" {
		t.Fatalf("B alone opens the new ciphertext: %q, %v", got, err)
	}
	if ids := rotated.KeyIDs(); len(ids) != 2 || ids[0] != newID || ids[1] != oldID {
		t.Fatalf("KeyIDs = %v", ids)
	}
	// A retired: the old ciphertext no longer opens, with a clear error.
	got, err := ring(t, b).Open("alice", "github", oldID, oldCT)
	wantOpenRefused(t, got, err, vault.ErrUnknownKey, a, b)
}

// TestVaultRotationResealsOnRefresh: after a key rotation the vault still
// opens credentials sealed under the old key, and reseals them under the new
// one at the next refresh.
func TestVaultRotationResealsOnRefresh(t *testing.T) {
	ctx := t.Context()
	w := newWorld(t, nil)
	w.connect(t, alice, time.Hour)
	oldID := w.keys.SealingKeyID()
	newKey, err := vault.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	both, err := vault.ParseKeyring(newKey + "," + w.keyB64) // the rotation: the new key first
	if err != nil {
		t.Fatal(err)
	}
	v2, err := vault.New(vault.Config{Store: w.db, Keys: both, Refresher: httpRefresher{url: w.te.srv.URL, clock: w.clock}, Now: w.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := v2.Get(ctx, alice, "fake"); err != nil || tok.AccessToken != "at-alice-1" {
		t.Fatalf("Get under the rotated ring = %v, %v", tok.AccessToken, err)
	}
	w.clock.Advance(56 * time.Minute)
	if tok, err := v2.Get(ctx, alice, "fake"); err != nil || tok.AccessToken != "at-alice-2" {
		t.Fatalf("refresh under the rotated ring = %v, %v", tok.AccessToken, err)
	}
	sc, err := w.db.GetCredential(ctx, alice, "fake")
	if err != nil || sc.KeyID != both.SealingKeyID() || sc.KeyID == oldID {
		t.Fatalf("after refresh the row is sealed with %s, want the new key %s (old %s): %v", sc.KeyID, both.SealingKeyID(), oldID, err)
	}
	// Once every row is resealed, the old key can go.
	onlyNew, _ := vault.ParseKeyring(newKey)
	if _, err := onlyNew.Open(alice.UserID, "fake", sc.KeyID, sc.Ciphertext); err != nil {
		t.Fatalf("the new key alone opens the resealed row: %v", err)
	}
}

func TestParseKeyring(t *testing.T) {
	good := base64.StdEncoding.EncodeToString(rawKey(7))
	k, err := vault.ParseKeyring(" " + good + " ,, " + base64.StdEncoding.EncodeToString(rawKey(8)))
	if err != nil || len(k.KeyIDs()) != 2 || k.SealingKeyID() != vault.KeyID(rawKey(7)) {
		t.Fatalf("ParseKeyring = %v, %v", k, err)
	}
	short := base64.StdEncoding.EncodeToString(rawKey(7)[:16])
	for _, spec := range []string{"", " , ", "not base64!", short, good + "," + good, base64.RawURLEncoding.EncodeToString(append(rawKey(7)[:31], 0xfb))} {
		_, err := vault.ParseKeyring(spec)
		if err == nil {
			t.Errorf("ParseKeyring(%q) accepted", spec)
			continue
		}
		if spec != "" && strings.Contains(err.Error(), strings.TrimSpace(strings.Split(spec, ",")[0])) && strings.TrimSpace(spec) != "," {
			t.Errorf("the error for %q shows the key: %v", spec, err)
		}
	}
}

func TestDevKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "vault-key")
	k1, err := vault.LoadOrCreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if _, err := vault.ParseKeyring(k1); err != nil {
		t.Fatalf("generated key does not parse: %v", err)
	}
	if k2, err := vault.LoadOrCreateKeyFile(path); err != nil || k2 != k1 {
		t.Fatalf("second load = %q, %v; want the same key", k2, err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := vault.LoadOrCreateKeyFile(path); err == nil || strings.Contains(err.Error(), k1) {
		t.Fatalf("a world-readable key file: %v; want a refusal that does not show the key", err)
	}
}

func TestTokenIsRedacted(t *testing.T) {
	tok := vault.Token{AccessToken: "at-secret", RefreshToken: "rt-secret", Expiry: time.Now()}
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("token", "tok", tok)
	for _, s := range []string{fmt.Sprint(tok), fmt.Sprintf("%v %+v %#v %s", tok, tok, tok, tok), buf.String()} {
		if strings.Contains(s, "secret") {
			t.Fatalf("a token shows: %s", s)
		}
	}
}

func TestGetCachesAndRefreshes(t *testing.T) {
	ctx := t.Context()
	w := newWorld(t, nil)
	w.connect(t, alice, time.Hour)

	for range 3 {
		tok, err := w.v.Get(ctx, alice, "fake")
		if err != nil || tok.AccessToken != "at-alice-1" || tok.RefreshToken != "" {
			t.Fatalf("Get = %q (refresh token %q), %v", tok.AccessToken, tok.RefreshToken, err)
		}
	}
	if n := w.te.count.Load(); n != 0 {
		t.Fatalf("%d refreshes of a token with an hour left", n)
	}
	w.clock.Advance(54 * time.Minute) // 6 minutes left: still used as is
	if tok, _ := w.v.Get(ctx, alice, "fake"); tok.AccessToken != "at-alice-1" || w.te.count.Load() != 0 {
		t.Fatalf("6 minutes left: %q after %d refreshes", tok.AccessToken, w.te.count.Load())
	}
	w.clock.Advance(2 * time.Minute) // 4 minutes left: refreshed
	tok, err := w.v.Get(ctx, alice, "fake")
	if err != nil || tok.AccessToken != "at-alice-2" || w.te.count.Load() != 1 {
		t.Fatalf("4 minutes left: %q, %v after %d refreshes", tok.AccessToken, err, w.te.count.Load())
	}
	// The rotated refresh token is what the store holds now.
	sc, m := w.stored(t, alice)
	if m["refresh_token"] != "rt-alice-2" || m["access_token"] != "at-alice-2" || sc.Status != idflow.ConnectionActive ||
		sc.ExpiresAt == nil || !sc.ExpiresAt.Equal(w.clock.In(time.Hour)) {
		t.Fatalf("stored after refresh: %+v %v", sc, m["refresh_token"])
	}
	// A second vault (a restart, another replica) reads the rotated token
	// and refreshes with it: the old one would be invalid_grant.
	w.clock.Advance(57 * time.Minute)
	v2 := w.vault(t, w.db, nil)
	if tok, err := v2.Get(ctx, alice, "fake"); err != nil || tok.AccessToken != "at-alice-3" {
		t.Fatalf("another vault's refresh = %q, %v", tok.AccessToken, err)
	}
}

// TestRefreshIsSingleFlight: 100 callers of one user at expiry make
// exactly one refresh request upstream, and all get its result.
func TestRefreshIsSingleFlight(t *testing.T) {
	ctx := t.Context()
	w := newWorld(t, nil)
	w.connect(t, alice, time.Hour)
	w.connect(t, bob, time.Hour)
	w.clock.Advance(time.Hour + time.Second) // expired

	w.te.gate, w.te.entered = make(chan struct{}), make(chan struct{}, 200)
	const callers = 100
	var started, wg sync.WaitGroup
	started.Add(callers)
	results := make(chan string, callers)
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			started.Done()
			tok, err := w.v.Get(ctx, alice, "fake")
			if err != nil {
				errs <- err
				return
			}
			results <- tok.AccessToken
		})
	}
	started.Wait()
	select { // one request reached the endpoint; it is held until every caller has started
	case <-w.te.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no refresh request reached the endpoint")
	}
	close(w.te.gate)
	wg.Wait()
	close(results)
	close(errs)
	for err := range errs {
		t.Fatalf("Get: %v", err)
	}
	n := 0
	for at := range results {
		n++
		if at != "at-alice-2" {
			t.Fatalf("a caller got %q, want the refreshed at-alice-2", at)
		}
	}
	if n != callers || w.te.count.Load() != 1 {
		t.Fatalf("%d results, %d refresh requests; want %d and exactly 1", n, w.te.count.Load(), callers)
	}
	if _, m := w.stored(t, alice); m["refresh_token"] != "rt-alice-2" {
		t.Fatalf("stored refresh token %v, want the rotated rt-alice-2", m["refresh_token"])
	}
	// bob's credential is his own and untouched.
	if _, m := w.stored(t, bob); m["refresh_token"] != "rt-bob-1" {
		t.Fatalf("bob's refresh token %v", m["refresh_token"])
	}
}

// TestInvalidGrantNeedsConsent: an upstream refusal marks the connection
// needs_consent and answers a clear 409 — never another token.
func TestInvalidGrantNeedsConsent(t *testing.T) {
	ctx := t.Context()
	var logs bytes.Buffer
	w := newWorld(t, func(c *vault.Config) {
		c.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	w.connect(t, alice, time.Hour)
	w.connect(t, bob, time.Hour)
	w.te.refuse(alice.UserID)
	w.clock.Advance(58 * time.Minute)

	tok, err := w.v.Get(ctx, alice, "fake")
	if err == nil || tok.AccessToken != "" {
		t.Fatalf("Get after invalid_grant = %q, %v; want no token and an error", tok.AccessToken, err)
	}
	if idflow.ErrorCode(err) != idflow.ECONFLICT || !errors.Is(err, vault.ErrNeedsConsent) ||
		!strings.Contains(idflow.ErrorMessage(err), "POST /api/v1/connections/fake/connect") {
		t.Fatalf("error %v (code %s, message %q); want a 409 telling the user to reconnect", err, idflow.ErrorCode(err), idflow.ErrorMessage(err))
	}
	if prov, ok := vault.ProviderToConnect(err); !ok || prov != "fake" {
		t.Fatalf("ProviderToConnect = %q, %v; want the provider to reconnect", prov, ok)
	}
	sc, _ := w.stored(t, alice)
	if sc.Status != idflow.ConnectionNeedsConsent {
		t.Fatalf("status %q, want needs_consent", sc.Status)
	}
	if ev := w.audit.all(); len(ev) != 1 || ev[0] != "alice connection.needs_consent connection/fake conflict" {
		t.Fatalf("audit %v", ev)
	}
	// Later calls refuse at once, without asking upstream again.
	before := w.te.count.Load()
	if _, err := w.v.Get(ctx, alice, "fake"); !errors.Is(err, vault.ErrNeedsConsent) || w.te.count.Load() != before {
		t.Fatalf("second Get: %v after %d more requests", err, w.te.count.Load()-before)
	}
	// Bob is unaffected.
	if tok, err := w.v.Get(ctx, bob, "fake"); err != nil || tok.AccessToken != "at-bob-2" {
		t.Fatalf("bob = %q, %v", tok.AccessToken, err)
	}
	// Reconnecting (a new Put) makes it active again.
	w.connect(t, alice, time.Hour)
	if tok, err := w.v.Get(ctx, alice, "fake"); err != nil || !strings.HasPrefix(tok.AccessToken, "at-alice-") {
		t.Fatalf("after reconnect = %q, %v", tok.AccessToken, err)
	}
	for _, secret := range []string{"at-alice", "rt-alice", "at-bob", "rt-bob"} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("a token was logged: %s", logs.String())
		}
	}
}

func TestNotConnected(t *testing.T) {
	w := newWorld(t, nil)
	w.connect(t, bob, time.Hour)
	tok, err := w.v.Get(t.Context(), alice, "fake")
	if tok.AccessToken != "" || idflow.ErrorCode(err) != idflow.ECONFLICT || !errors.Is(err, vault.ErrNotConnected) {
		t.Fatalf("Get without a connection = %q, %v", tok.AccessToken, err)
	}
	if prov, ok := vault.ProviderToConnect(err); !ok || prov != "fake" {
		t.Fatalf("ProviderToConnect = %q, %v; want the provider to connect", prov, ok)
	}
	if _, ok := vault.ProviderToConnect(idflow.Errorf(idflow.ECONFLICT, "another conflict")); ok {
		t.Fatal("ProviderToConnect names a provider for an error that is not about a connection")
	}
	app := authtest.App("svc")
	if _, err := w.v.Get(t.Context(), app, "fake"); idflow.ErrorCode(err) != idflow.EFORBIDDEN {
		t.Fatalf("app-only Get: %v", err)
	}
}

// TestUpstreamDown: a refresh that cannot reach the provider keeps using a
// token that has not expired yet, and fails clearly once it has.
func TestUpstreamDown(t *testing.T) {
	ctx := t.Context()
	w := newWorld(t, nil)
	w.connect(t, alice, time.Hour)
	w.te.srv.Close()
	w.clock.Advance(57 * time.Minute)
	if tok, err := w.v.Get(ctx, alice, "fake"); err != nil || tok.AccessToken != "at-alice-1" {
		t.Fatalf("3 minutes left, provider down: %q, %v", tok.AccessToken, err)
	}
	w.clock.Advance(4 * time.Minute)
	tok, err := w.v.Get(ctx, alice, "fake")
	if tok.AccessToken != "" || idflow.ErrorCode(err) != idflow.EUNAVAILABLE {
		t.Fatalf("expired, provider down: %q, %v", tok.AccessToken, err)
	}
	if sc, _ := w.stored(t, alice); sc.Status != idflow.ConnectionActive {
		t.Fatalf("an outage must not cost the user their connection: status %q", sc.Status)
	}
}

func TestRemove(t *testing.T) {
	ctx := t.Context()
	w := newWorld(t, nil)
	w.connect(t, alice, time.Hour)
	if _, err := w.v.Get(ctx, alice, "fake"); err != nil {
		t.Fatal(err)
	}
	var revoked vault.Token
	if err := w.v.Remove(ctx, bob, "fake", func(_ context.Context, t vault.Token) { revoked = t }); idflow.ErrorCode(err) != idflow.ENOTFOUND {
		t.Fatalf("bob removing alice's connection: %v", err)
	}
	if err := w.v.Remove(ctx, alice, "fake", func(_ context.Context, t vault.Token) { revoked = t }); err != nil {
		t.Fatal(err)
	}
	if revoked.RefreshToken != "rt-alice-1" {
		t.Fatalf("before() got refresh token %q", revoked.RefreshToken)
	}
	if _, err := w.v.Get(ctx, alice, "fake"); !errors.Is(err, vault.ErrNotConnected) {
		t.Fatalf("Get after Remove: %v; the cache must be dropped", err)
	}
}

// TestRecheckSeesOtherReplicas: a disconnect made by another replica shows
// here once the cached token is older than Recheck.
func TestRecheckSeesOtherReplicas(t *testing.T) {
	ctx := t.Context()
	w := newWorld(t, nil)
	w.connect(t, alice, time.Hour)
	if _, err := w.v.Get(ctx, alice, "fake"); err != nil {
		t.Fatal(err)
	}
	other := w.vault(t, w.db, nil)
	if err := other.Remove(ctx, alice, "fake", nil); err != nil {
		t.Fatal(err)
	}
	if tok, err := w.v.Get(ctx, alice, "fake"); err != nil || tok.AccessToken == "" {
		t.Fatalf("within Recheck the cached token serves: %v", err)
	}
	w.clock.Advance(vault.DefaultRecheck)
	if _, err := w.v.Get(ctx, alice, "fake"); !errors.Is(err, vault.ErrNotConnected) {
		t.Fatalf("after Recheck: %v; want not connected", err)
	}
}

// TestRotationRaceAcrossReplicas: replica B refreshes with a refresh token
// replica A already rotated; the provider says invalid_grant, and B finds
// A's newer token in the store instead of giving up on the connection.
func TestRotationRaceAcrossReplicas(t *testing.T) {
	ctx := t.Context()
	w := newWorld(t, nil)
	w.connect(t, alice, time.Hour)
	b := w.vault(t, w.db, nil)
	if _, err := b.Get(ctx, alice, "fake"); err != nil { // B caches at-alice-1
		t.Fatal(err)
	}
	w.clock.Advance(56 * time.Minute)
	if tok, err := w.v.Get(ctx, alice, "fake"); err != nil || tok.AccessToken != "at-alice-2" { // A rotates
		t.Fatalf("A: %q, %v", tok.AccessToken, err)
	}
	// B's cache is stale; it reads the row (A's rotated one) and uses it.
	if tok, err := b.Get(ctx, alice, "fake"); err != nil || tok.AccessToken != "at-alice-2" {
		t.Fatalf("B: %q, %v", tok.AccessToken, err)
	}
	if w.te.count.Load() != 1 {
		t.Fatalf("%d refreshes, want 1", w.te.count.Load())
	}
	// Force the race itself: a Refresher that loses it.
	winner := w.vault(t, w.db, nil)
	loser := w.vault(t, w.db, func(c *vault.Config) { c.Refresher = racingRefresher{w: w, winner: winner} })
	w.clock.Advance(57 * time.Minute)
	tok, err := loser.Get(ctx, alice, "fake")
	if err != nil || tok.AccessToken != "at-alice-3" {
		t.Fatalf("the replica that lost the race: %q, %v; want the winner's at-alice-3", tok.AccessToken, err)
	}
	if sc, _ := w.stored(t, alice); sc.Status != idflow.ConnectionActive {
		t.Fatalf("status %q after a lost race", sc.Status)
	}
}

// racingRefresher lets another replica refresh first, then presents the
// refresh token it had read, which the provider has rotated away.
type racingRefresher struct {
	w      *world
	winner *vault.Vault
}

func (r racingRefresher) Refresh(ctx context.Context, provider, refreshToken string) (vault.Token, error) {
	if _, err := r.winner.Get(ctx, alice, provider); err != nil {
		return vault.Token{}, err
	}
	return httpRefresher{url: r.w.te.srv.URL, clock: r.w.clock}.Refresh(ctx, provider, refreshToken)
}
