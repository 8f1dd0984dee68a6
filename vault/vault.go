package vault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idflow/idflow"
)

// Defaults of Config.
const (
	DefaultRefreshBefore = 5 * time.Minute
	DefaultRecheck       = time.Minute
	DefaultRefreshTime   = 30 * time.Second
)

// Causes of Get's refusals, for errors.Is (the MCP server maps them to a
// tool error). Both come wrapped in an idflow.Error with code ECONFLICT
// (HTTP 409): the request is fine, the user's connection is not, and only
// the user can fix it by connecting (again).
var (
	ErrNotConnected = errors.New("vault: not connected")
	ErrNeedsConsent = errors.New("vault: connection needs consent")
	// ErrInvalidGrant is what a Refresher wraps when the provider refused
	// the refresh token (OAuth error invalid_grant).
	ErrInvalidGrant = errors.New("vault: the provider refused the refresh token")
)

// Token is a downstream credential. Get returns it without RefreshToken:
// the refresh token never leaves the vault except to the provider's token
// and revocation endpoints.
type Token struct {
	AccessToken  string
	RefreshToken string
	TokenType    string
	Expiry       time.Time // zero: the provider gave no lifetime
	Scopes       []string
}

// String keeps tokens out of logs and error messages.
func (t Token) String() string { return "vault.Token{redacted}" }

// GoString keeps tokens out of %#v.
func (t Token) GoString() string { return t.String() }

// LogValue keeps tokens out of slog.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(slog.Time("expiry", t.Expiry), slog.Any("scopes", t.Scopes))
}

// valid reports whether the access token has not expired at now.
func (t Token) valid(now time.Time) bool { return t.Expiry.IsZero() || now.Before(t.Expiry) }

// fresh reports whether the token has at least before left at now.
func (t Token) fresh(now time.Time, before time.Duration) bool {
	return t.Expiry.IsZero() || t.Expiry.Sub(now) >= before
}

// public is t as Get hands it out.
func (t Token) public() Token {
	t.RefreshToken = ""
	t.Scopes = slices.Clone(t.Scopes)
	return t
}

// payload is the plaintext of a sealed credential.
type payload struct {
	V            int      `json:"v"`
	AccessToken  string   `json:"access_token"`
	RefreshToken string   `json:"refresh_token,omitempty"`
	TokenType    string   `json:"token_type,omitempty"`
	Expiry       int64    `json:"expiry,omitempty"` // Unix nanoseconds; 0 = none
	Scopes       []string `json:"scopes,omitempty"`
}

// Refresher redeems a refresh token at a provider's token endpoint. A
// refusal by the provider (invalid_grant) must wrap ErrInvalidGrant; any
// other error counts as the provider being unreachable.
type Refresher interface {
	Refresh(ctx context.Context, provider, refreshToken string) (Token, error)
}

// Config configures a Vault.
type Config struct {
	Store     idflow.ConnectionStore
	Keys      *Keyring
	Refresher Refresher
	// RefreshBefore: a token with less than this left is refreshed
	// (default 5 minutes).
	RefreshBefore time.Duration
	// Recheck: a cached token older than this is checked against its row
	// again, so that a disconnect or reconnect on another replica shows
	// (default 1 minute).
	Recheck time.Duration
	// RefreshTimeout bounds one refresh; it runs detached from the caller's
	// context, so a caller that gives up cannot lose a rotated refresh
	// token half way (default 30 s).
	RefreshTimeout time.Duration
	// Audit records a connection that needs consent again (optional).
	Audit func(ctx context.Context, p idflow.Principal, action, resource string, err error)
	Log   *slog.Logger
	Now   func() time.Time

	// OnRefresh, when set, is told the outcome of every refresh sent to a
	// provider (monitoring): nil, an error wrapping ErrInvalidGrant, or
	// another error.
	OnRefresh func(err error)
}

// Vault hands out users' downstream access tokens.
type Vault struct {
	cfg     Config
	entries sync.Map // entryKey → *entry
}

// entryKey is derived from the Principal (its owner id), never from a
// client-chosen string.
type entryKey struct{ owner, provider string }

// entry is one (user, provider): its cached token, and the lock that makes
// every load, refresh, store and delete of that pair happen one at a time.
type entry struct {
	lock chan struct{}
	cur  atomic.Pointer[cached]
}

type cached struct {
	tok        Token // with its refresh token: never handed out as is
	ciphertext []byte
	checked    time.Time
}

// New returns a Vault.
func New(cfg Config) (*Vault, error) {
	if cfg.Store == nil || cfg.Keys == nil || cfg.Refresher == nil {
		return nil, errors.New("vault: a store, a keyring and a refresher are required")
	}
	if cfg.RefreshBefore <= 0 {
		cfg.RefreshBefore = DefaultRefreshBefore
	}
	if cfg.Recheck <= 0 {
		cfg.Recheck = DefaultRecheck
	}
	if cfg.RefreshTimeout <= 0 {
		cfg.RefreshTimeout = DefaultRefreshTime
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Vault{cfg: cfg}, nil
}

// Keys is the vault's keyring.
func (v *Vault) Keys() *Keyring { return v.cfg.Keys }

func (v *Vault) entry(k entryKey) *entry {
	if e, ok := v.entries.Load(k); ok {
		return e.(*entry)
	}
	e, _ := v.entries.LoadOrStore(k, &entry{lock: make(chan struct{}, 1)})
	return e.(*entry)
}

func (e *entry) acquire(ctx context.Context) error {
	select {
	case e.lock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return idflow.WrapError(idflow.EUNAVAILABLE, "request cancelled while waiting for a credential", ctx.Err())
	}
}

func (e *entry) release() { <-e.lock }

// hit returns the cached token when it may be used as is at now.
func (v *Vault) hit(e *entry, now time.Time) (Token, bool) {
	c := e.cur.Load()
	if c == nil || !c.tok.fresh(now, v.cfg.RefreshBefore) || now.Sub(c.checked) >= v.cfg.Recheck {
		return Token{}, false
	}
	return c.tok.public(), true
}

// Get returns a usable access token of p for provider: from memory when it
// has more than RefreshBefore left, else opened from the store, refreshed
// when needed. However many callers ask at once, one of them loads or
// refreshes and the others wait for its result.
func (v *Vault) Get(ctx context.Context, p idflow.Principal, provider string) (Token, error) {
	owner, err := p.Owner()
	if err != nil {
		return Token{}, err
	}
	e := v.entry(entryKey{owner, provider})
	if t, ok := v.hit(e, v.cfg.Now()); ok {
		return t, nil
	}
	if err := e.acquire(ctx); err != nil {
		return Token{}, err
	}
	defer e.release()
	if t, ok := v.hit(e, v.cfg.Now()); ok { // another caller did the work
		return t, nil
	}
	return v.load(ctx, p, owner, provider, e)
}

// load reads the row, and opens or refreshes its token; e is held.
func (v *Vault) load(ctx context.Context, p idflow.Principal, owner, provider string, e *entry) (Token, error) {
	now := v.cfg.Now()
	sc, err := v.cfg.Store.GetCredential(ctx, p, provider)
	if err != nil {
		e.cur.Store(nil)
		if idflow.ErrorCode(err) == idflow.ENOTFOUND {
			return Token{}, notConnected(provider)
		}
		return Token{}, err
	}
	if sc.Status == idflow.ConnectionNeedsConsent {
		e.cur.Store(nil)
		return Token{}, needsConsent(provider, nil)
	}
	if c := e.cur.Load(); c != nil && bytes.Equal(c.ciphertext, sc.Ciphertext) && c.tok.fresh(now, v.cfg.RefreshBefore) {
		e.cur.Store(&cached{tok: c.tok, ciphertext: c.ciphertext, checked: now}) // unchanged row
		return c.tok.public(), nil
	}
	tok, err := v.open(owner, provider, sc)
	if err != nil {
		e.cur.Store(nil)
		return Token{}, err
	}
	if tok.fresh(now, v.cfg.RefreshBefore) {
		e.cur.Store(&cached{tok: tok, ciphertext: sc.Ciphertext, checked: now})
		return tok.public(), nil
	}
	return v.refresh(ctx, p, owner, provider, e, sc, tok)
}

// refresh redeems tok's refresh token and stores the result before anyone
// uses it; e is held.
func (v *Vault) refresh(ctx context.Context, p idflow.Principal, owner, provider string, e *entry, sc idflow.SealedCredential, tok Token) (Token, error) {
	now := v.cfg.Now()
	if tok.RefreshToken == "" {
		if tok.valid(now) {
			return tok.public(), nil // nothing to refresh with; still usable for now
		}
		return Token{}, v.markNeedsConsent(ctx, p, provider, e, errors.New("access token expired and no refresh token was issued"))
	}
	// Detached: once the request is on its way, a rotated refresh token
	// must be stored even if the caller stops waiting.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), v.cfg.RefreshTimeout)
	defer cancel()
	nt, err := v.cfg.Refresher.Refresh(rctx, provider, tok.RefreshToken)
	if v.cfg.OnRefresh != nil {
		v.cfg.OnRefresh(err)
	}
	if errors.Is(err, ErrInvalidGrant) {
		// Another replica may have rotated the refresh token after we read
		// it: its row then holds a newer, fresh token.
		if sc2, err2 := v.cfg.Store.GetCredential(rctx, p, provider); err2 == nil &&
			sc2.Status == idflow.ConnectionActive && !bytes.Equal(sc2.Ciphertext, sc.Ciphertext) {
			if t2, err3 := v.open(owner, provider, sc2); err3 == nil && t2.fresh(v.cfg.Now(), v.cfg.RefreshBefore) {
				e.cur.Store(&cached{tok: t2, ciphertext: sc2.Ciphertext, checked: v.cfg.Now()})
				return t2.public(), nil
			}
		}
		return Token{}, v.markNeedsConsent(rctx, p, provider, e, err)
	}
	if err != nil {
		if tok.valid(now) {
			v.cfg.Log.WarnContext(ctx, "vault: refresh failed; using the current access token until it expires",
				"provider", provider, "expiry", tok.Expiry, "err", err)
			return tok.public(), nil
		}
		return Token{}, idflow.WrapError(idflow.EUNAVAILABLE,
			fmt.Sprintf("could not refresh your connection to %q; try again later", provider), err)
	}
	if nt.AccessToken == "" {
		return Token{}, idflow.Errorf(idflow.EUNAVAILABLE, "the provider %q answered a refresh without an access token", provider)
	}
	if nt.RefreshToken == "" {
		nt.RefreshToken = tok.RefreshToken // not rotated: the old one stays valid
	}
	if len(nt.Scopes) == 0 {
		nt.Scopes = tok.Scopes
	}
	ct, err := v.store(rctx, p, owner, provider, nt)
	if err != nil {
		e.cur.Store(nil)
		return Token{}, err
	}
	e.cur.Store(&cached{tok: nt, ciphertext: ct, checked: v.cfg.Now()})
	return nt.public(), nil
}

// markNeedsConsent records that only the user can repair the connection.
func (v *Vault) markNeedsConsent(ctx context.Context, p idflow.Principal, provider string, e *entry, cause error) error {
	e.cur.Store(nil)
	if err := v.cfg.Store.SetConnectionStatus(context.WithoutCancel(ctx), p, provider, idflow.ConnectionNeedsConsent); err != nil {
		v.cfg.Log.ErrorContext(ctx, "vault: could not mark a connection needs_consent", "provider", provider, "err", err)
	}
	err := needsConsent(provider, cause)
	v.cfg.Log.WarnContext(ctx, "vault: connection needs consent", "provider", provider, "cause", cause)
	if v.cfg.Audit != nil {
		v.cfg.Audit(ctx, p, "connection.needs_consent", "connection/"+provider, err)
	}
	return err
}

// Put seals tok as p's credential for provider (replacing any) and caches it.
func (v *Vault) Put(ctx context.Context, p idflow.Principal, provider string, tok Token) (idflow.Connection, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.Connection{}, err
	}
	if tok.AccessToken == "" {
		return idflow.Connection{}, idflow.Errorf(idflow.EINVALID, "no access token to store")
	}
	e := v.entry(entryKey{owner, provider})
	if err := e.acquire(ctx); err != nil {
		return idflow.Connection{}, err
	}
	defer e.release()
	sealedKeyID, ct, err := v.cfg.Keys.Seal(owner, provider, marshal(tok))
	if err != nil {
		return idflow.Connection{}, err
	}
	c, err := v.cfg.Store.PutCredential(ctx, p, credential(provider, sealedKeyID, ct, tok))
	if err != nil {
		e.cur.Store(nil)
		return idflow.Connection{}, err
	}
	e.cur.Store(&cached{tok: tok, ciphertext: ct, checked: v.cfg.Now()})
	return c, nil
}

// Remove deletes p's credential for provider. before, when set, runs first
// with the opened token (to revoke it upstream); a credential that no
// longer opens is deleted all the same.
func (v *Vault) Remove(ctx context.Context, p idflow.Principal, provider string, before func(context.Context, Token)) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	e := v.entry(entryKey{owner, provider})
	if err := e.acquire(ctx); err != nil {
		return err
	}
	defer e.release()
	sc, err := v.cfg.Store.GetCredential(ctx, p, provider)
	if err != nil {
		return err
	}
	if before != nil {
		if tok, err := v.open(owner, provider, sc); err != nil {
			v.cfg.Log.WarnContext(ctx, "vault: deleting a credential that does not open", "provider", provider, "err", err)
		} else {
			before(ctx, tok)
		}
	}
	e.cur.Store(nil)
	return v.cfg.Store.DeleteCredential(ctx, p, provider)
}

// store seals tok and writes it as the active credential.
func (v *Vault) store(ctx context.Context, p idflow.Principal, owner, provider string, tok Token) ([]byte, error) {
	keyID, ct, err := v.cfg.Keys.Seal(owner, provider, marshal(tok))
	if err != nil {
		return nil, err
	}
	if _, err := v.cfg.Store.PutCredential(ctx, p, credential(provider, keyID, ct, tok)); err != nil {
		return nil, err
	}
	return ct, nil
}

func (v *Vault) open(owner, provider string, sc idflow.SealedCredential) (Token, error) {
	plain, err := v.cfg.Keys.Open(owner, provider, sc.KeyID, sc.Ciphertext)
	if err != nil {
		return Token{}, err
	}
	var pl payload
	if err := json.Unmarshal(plain, &pl); err != nil || pl.V != 1 || pl.AccessToken == "" {
		return Token{}, idflow.Errorf(idflow.EINTERNAL, "stored credential for %q has an unknown format", provider)
	}
	t := Token{AccessToken: pl.AccessToken, RefreshToken: pl.RefreshToken, TokenType: pl.TokenType, Scopes: pl.Scopes}
	if pl.Expiry != 0 {
		t.Expiry = time.Unix(0, pl.Expiry).UTC()
	}
	return t, nil
}

func marshal(t Token) []byte {
	pl := payload{V: 1, AccessToken: t.AccessToken, RefreshToken: t.RefreshToken, TokenType: t.TokenType, Scopes: t.Scopes}
	if !t.Expiry.IsZero() {
		pl.Expiry = t.Expiry.UnixNano()
	}
	b, _ := json.Marshal(pl) // strings, ints and a []string always encode
	return b
}

func credential(provider, keyID string, ct []byte, t Token) idflow.SealedCredential {
	sc := idflow.SealedCredential{Provider: provider, KeyID: keyID, Ciphertext: ct, Status: idflow.ConnectionActive,
		Scopes: slices.Clone(t.Scopes)}
	if sc.Scopes == nil {
		sc.Scopes = []string{}
	}
	if !t.Expiry.IsZero() {
		exp := t.Expiry.UTC()
		sc.ExpiresAt = &exp
	}
	return sc
}

// ConnectError is the cause of Get's refusals that only the user can fix
// by connecting Provider (again): it wraps ErrNotConnected or
// ErrNeedsConsent. It names the provider so that a caller (the MCP server)
// can start that connect flow for the user instead of only describing it.
type ConnectError struct {
	Provider string
	Err      error // ErrNotConnected, or ErrNeedsConsent joined with its cause
}

func (e *ConnectError) Error() string { return fmt.Sprintf("connect %s: %v", e.Provider, e.Err) }
func (e *ConnectError) Unwrap() error { return e.Err }

// ProviderToConnect returns the provider err asks the user to connect, if
// err (at any depth) is a ConnectError.
func ProviderToConnect(err error) (string, bool) {
	var ce *ConnectError
	if errors.As(err, &ce) {
		return ce.Provider, true
	}
	return "", false
}

func notConnected(provider string) error {
	return idflow.WrapError(idflow.ECONFLICT, fmt.Sprintf(
		"you have no connection to %q: connect with POST /api/v1/connections/%s/connect", provider, provider),
		&ConnectError{Provider: provider, Err: ErrNotConnected})
}

func needsConsent(provider string, cause error) error {
	return idflow.WrapError(idflow.ECONFLICT, fmt.Sprintf(
		"your connection to %q needs your consent again: reconnect with POST /api/v1/connections/%s/connect", provider, provider),
		&ConnectError{Provider: provider, Err: errors.Join(ErrNeedsConsent, cause)})
}
