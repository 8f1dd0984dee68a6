package mcpclient

import (
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/connections"
)

// sessionKey names the one session of a user with a server.
type sessionKey struct{ owner, server string }

// table holds the live sessions: at most max, least recently used first
// out, closed after idle without use. A session in use is never evicted.
type table struct {
	max  int
	idle time.Duration
	now  func() time.Time

	mu     sync.Mutex
	byKey  map[sessionKey]*session
	lru    *list.List // of *session, most recently acquired at the front
	closed bool
}

func newTable(max int, idle time.Duration, now func() time.Time) *table {
	return &table{max: max, idle: idle, now: now, byKey: map[sessionKey]*session{}, lru: list.New()}
}

var errTooManySessions = idflow.Errorf(idflow.ERATELIMIT, "too many downstream MCP sessions are in use; retry later")

// acquire returns the session of k, made by mk when there is none, and
// marks it in use until release.
func (t *table) acquire(k sessionKey, mk func() *session) (*session, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, idflow.Errorf(idflow.EUNAVAILABLE, "downstream MCP servers are shutting down")
	}
	now := t.now()
	t.sweepLocked(now)
	s := t.byKey[k]
	if s == nil {
		if len(t.byKey) >= t.max && !t.evictLocked() {
			return nil, errTooManySessions
		}
		s = mk()
		s.elem = t.lru.PushFront(s)
		t.byKey[k] = s
	} else {
		t.lru.MoveToFront(s.elem)
	}
	s.inUse++
	s.lastUsed = now
	return s, nil
}

func (t *table) release(s *session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s.inUse--
	s.lastUsed = t.now()
}

// sweepLocked closes sessions idle for longer than t.idle, from the least
// recently acquired; it stops at the first recent one.
func (t *table) sweepLocked(now time.Time) {
	for e := t.lru.Back(); e != nil; {
		s := e.Value.(*session)
		prev := e.Prev()
		if s.inUse == 0 {
			if now.Sub(s.lastUsed) < t.idle {
				return
			}
			t.removeLocked(s)
		}
		e = prev
	}
}

// evictLocked closes the least recently used session not in use.
func (t *table) evictLocked() bool {
	for e := t.lru.Back(); e != nil; e = e.Prev() {
		if s := e.Value.(*session); s.inUse == 0 {
			t.removeLocked(s)
			return true
		}
	}
	return false
}

func (t *table) removeLocked(s *session) {
	t.lru.Remove(s.elem)
	delete(t.byKey, s.key)
	go s.close() // a polite DELETE may take a few seconds
}

func (t *table) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byKey)
}

// close ends every session and refuses new ones.
func (t *table) close() {
	t.mu.Lock()
	t.closed = true
	all := make([]*session, 0, len(t.byKey))
	for _, s := range t.byKey {
		all = append(all, s)
	}
	t.byKey = map[sessionKey]*session{}
	t.lru.Init()
	t.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Go(s.close)
	}
	wg.Wait()
}

// session is one user's MCP session with one server. It holds the go-sdk
// client session (set up on first use, again after the server ends it)
// and the user's credential cache for that server.
type session struct {
	s      *Servers
	srv    *server
	key    sessionKey
	owner  string // ownerKey of the user it belongs to
	userID string

	// guarded by the table's mutex
	elem     *list.Element
	inUse    int
	lastUsed time.Time

	mu         sync.Mutex
	cs         *mcp.ClientSession
	connecting chan struct{} // closed when a set-up under way ends
	closed     bool

	cred credCache
}

func newSession(s *Servers, srv *server, owner, userID string) *session {
	return &session{s: s, srv: srv, key: sessionKey{owner, srv.Name}, owner: owner, userID: userID}
}

var errSessionClosed = errors.New("mcpclient: session closed")

// client returns the live go-sdk session, setting one up when there is
// none; concurrent callers wait for one set-up.
func (ss *session) client(ctx context.Context, c *call) (*mcp.ClientSession, error) {
	for {
		ss.mu.Lock()
		switch {
		case ss.closed:
			ss.mu.Unlock()
			return nil, errSessionClosed
		case ss.cs != nil:
			cs := ss.cs
			ss.mu.Unlock()
			return cs, nil
		case ss.connecting != nil:
			ch := ss.connecting
			ss.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		ch := make(chan struct{})
		ss.connecting = ch
		ss.mu.Unlock()

		cs, err := ss.connect(ctx, c)
		ss.mu.Lock()
		ss.connecting = nil
		if err == nil && ss.closed {
			go cs.Close()
			err = errSessionClosed
		}
		if err == nil {
			ss.cs = cs
			go ss.watch(cs)
		}
		ss.mu.Unlock()
		close(ch)
		return cs, err
	}
}

// connect sets up a go-sdk session. The SDK keeps the context of Connect
// for the session's life (its values, for the closing DELETE), so it gets
// a context holding nothing of the caller's but a copy of the call that
// forgets the inbound token once the set-up is done.
func (ss *session) connect(ctx context.Context, c *call) (*mcp.ClientSession, error) {
	hctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	if d, ok := ctx.Deadline(); ok {
		var cancelD context.CancelFunc
		hctx, cancelD = context.WithDeadline(hctx, d)
		defer cancelD()
	}
	hc := c.handshake()
	defer func() {
		hc.forgetInbound()
		c.absorb(hc)
	}()
	hctx = withCall(hctx, hc)
	transport := &mcp.StreamableClientTransport{
		Endpoint: ss.srv.URL,
		HTTPClient: &http.Client{
			Transport:     &authTransport{ss: ss, base: ss.s.deps.Transport},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		// Only answers to idflow's own requests are wanted: a standing
		// stream per user per server would cost a connection each.
		DisableStandaloneSSE: true,
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "idflow", Version: "1"}, &mcp.ClientOptions{
		Logger: ss.s.log.With("component", "mcpclient", "server", ss.srv.Name),
		// No roots, sampling or elicitation: a downstream server cannot
		// ask the model or the user anything through idflow.
		Capabilities: &mcp.ClientCapabilities{},
	})
	// Connect may outlive its context: on failure it closes the session,
	// which waits for the cancellation notice to a server that may never
	// answer. The caller does not wait for that.
	type connected struct {
		cs  *mcp.ClientSession
		err error
	}
	done := make(chan connected, 1)
	go func() {
		cs, err := client.Connect(hctx, transport, nil)
		done <- connected{cs, err}
	}()
	select {
	case r := <-done:
		return r.cs, r.err
	case <-ctx.Done():
		go func() {
			if r := <-done; r.cs != nil {
				_ = r.cs.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// watch forgets cs once it ends (the server or the transport closed it).
func (ss *session) watch(cs *mcp.ClientSession) {
	_ = cs.Wait()
	ss.drop(cs)
}

// drop forgets cs, if it is still the session's, and closes it.
func (ss *session) drop(cs *mcp.ClientSession) {
	ss.mu.Lock()
	if ss.cs == cs {
		ss.cs = nil
	}
	ss.mu.Unlock()
	go cs.Close()
}

func (ss *session) close() {
	ss.mu.Lock()
	ss.closed = true
	cs := ss.cs
	ss.cs = nil
	ss.mu.Unlock()
	if cs != nil {
		_ = cs.Close()
	}
}

// call is one use of a session: the Principal it is made for, its inbound
// token (exchange only), and what its HTTP requests saw. It travels in
// the request context to the transport.
type call struct {
	p idflow.Principal

	mu      sync.Mutex
	inbound string
	err     error // a credential failure in the transport

	status      atomic.Int32 // the last HTTP status
	sessionGone atomic.Bool  // the server answered 404 to a request of a session
}

type callKey struct{}

func newCall(ctx context.Context, p idflow.Principal) *call {
	c := &call{p: p}
	c.inbound, _ = idflow.InboundToken(ctx, p)
	return c
}

func withCall(ctx context.Context, c *call) context.Context {
	return context.WithValue(ctx, callKey{}, c)
}

func callFrom(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

func (c *call) inboundToken() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inbound
}

func (c *call) handshake() *call {
	return &call{p: c.p, inbound: c.inboundToken()}
}

func (c *call) forgetInbound() {
	c.mu.Lock()
	c.inbound = ""
	c.mu.Unlock()
}

func (c *call) setErr(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}

func (c *call) credErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// absorb takes what a handshake call saw.
func (c *call) absorb(h *call) {
	if err := h.credErr(); err != nil {
		c.setErr(err)
	}
	c.status.Store(h.status.Load())
	c.sessionGone.Store(h.sessionGone.Load())
}

// reset forgets what earlier requests of the call saw.
func (c *call) reset() {
	c.status.Store(0)
	c.sessionGone.Store(false)
	c.setErr(nil)
}

// authTransport puts the user's credential on each request of a session,
// fetched per request: a refreshed vault token is used at once, an
// expiring assertion is signed again. A request made for anyone but the
// session's owner is refused before it leaves.
type authTransport struct {
	ss   *session
	base http.RoundTripper
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c := callFrom(req.Context())
	if c == nil {
		return nil, errors.New("mcpclient: a downstream request without a call")
	}
	if owner, err := ownerKey(c.p); err != nil || owner != t.ss.owner {
		return nil, errors.New("mcpclient: a downstream request for another user than the session's; refused")
	}
	tok, err := t.ss.credential(req.Context(), c)
	if err != nil {
		c.setErr(err)
		return nil, err
	}
	out := req.Clone(req.Context())
	out.Header.Set("Authorization", "Bearer "+tok)
	resp, err := t.base.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	c.status.Store(int32(resp.StatusCode))
	if resp.StatusCode == http.StatusNotFound && req.Header.Get("Mcp-Session-Id") != "" {
		c.sessionGone.Store(true)
	}
	resp.Body = &limitedBody{r: resp.Body, left: maxResponse}
	return resp, nil
}

// limitedBody fails a response body past its limit.
type limitedBody struct {
	r    io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("mcpclient: a downstream response exceeds %d bytes", maxResponse)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.r.Close() }

// credCache is a session's cached credential: an assertion until near its
// expiry (while the Principal's claims stay the same), or an exchanged
// token until near its expiry (for the same inbound token).
type credCache struct {
	mu     sync.Mutex
	token  string
	key    string // what it was made from: claims, or the inbound token's digest
	expiry time.Time
	renew  time.Time // when to make a new one
}

func (cc *credCache) get(key string, now time.Time) (string, bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.token == "" || cc.key != key || !now.Before(cc.renew) {
		return "", false
	}
	return cc.token, true
}

func (cc *credCache) put(key, token string, now, expiry time.Time) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.token, cc.key, cc.expiry = token, key, expiry
	// Renew in the last fifth of the lifetime, so a request never leaves
	// with a credential about to expire.
	cc.renew = expiry.Add(-expiry.Sub(now) / 5)
}

// credential is the bearer token of c's user for the session's server.
func (ss *session) credential(ctx context.Context, c *call) (string, error) {
	srv, deps := ss.srv, ss.s.deps
	now := deps.Now()
	switch srv.Auth.Type {
	case AuthAssertion:
		p := c.p
		key := strings.Join(append([]string{p.TenantID, p.Email, p.Name}, p.Groups...), "\x00")
		if tok, ok := ss.cred.get(key, now); ok {
			return tok, nil
		}
		groups := p.Groups
		if groups == nil {
			groups = []string{}
		}
		exp := now.Add(ss.s.lim.AssertionLifetime)
		tok, err := deps.Signer.Sign(map[string]any{
			"iss": deps.Signer.Issuer(), "aud": srv.URL, "sub": p.UserID,
			"tid": p.TenantID, "email": p.Email, "name": p.Name, "groups": groups,
			"iat": now.Unix(), "nbf": now.Unix(), "exp": exp.Unix(),
		})
		if err != nil {
			return "", fmt.Errorf("sign the assertion: %w", err)
		}
		ss.cred.put(key, tok, now, exp)
		return tok, nil
	case AuthConnection:
		tok, err := deps.Connections.Token(ctx, c.p, srv.Auth.Provider)
		if err != nil {
			return "", err
		}
		return tok.AccessToken, nil
	case AuthExchange:
		inbound := c.inboundToken()
		if inbound == "" {
			return "", idflow.WrapError(idflow.EFORBIDDEN, "no inbound token", connections.ErrNoInboundToken)
		}
		sum := sha256.Sum256([]byte(inbound))
		key := string(sum[:])
		if tok, ok := ss.cred.get(key, now); ok {
			return tok, nil
		}
		tok, err := deps.Connections.Token(idflow.WithInboundToken(ctx, c.p, inbound), c.p, srv.Auth.Provider)
		if err != nil {
			return "", err
		}
		expiry := tok.Expiry
		if expiry.IsZero() {
			expiry = now.Add(time.Minute) // no lifetime given: reuse it briefly only
		}
		ss.cred.put(key, tok.AccessToken, now, expiry)
		return tok.AccessToken, nil
	}
	return "", fmt.Errorf("auth type %q", srv.Auth.Type)
}
