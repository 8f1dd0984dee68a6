// Package verify proves, against a live idflow deployment, that no user
// sees another user's data: what the test suite's authorization matrix
// and tool matrix check in CI, as a command an operator runs on their own
// deployment, behind their own proxy and identity provider (`idflow
// verify`, docs/VERIFY.md).
//
// With tokens of three users — A and B of one tenant, C of another — and
// optionally a tenant admin, an app-only token and an expired token, it
// reads the server's /openapi.json, creates one object of every kind as A
// (named with a unique word, removed at the end), then calls every route
// as everyone else: A's ids must answer 404 exactly like missing ones,
// lists and their filters, memory search, WebSockets, MCP tools and agent
// turns must carry nothing of A's, admin routes nothing of another
// tenant's; and A's objects must be unchanged at the end. Every request is
// rate-limited and recorded, redacted, for the report.
package verify

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

// Tokens are the bearer tokens the verifier acts with.
type Tokens struct {
	A, B, C string // users: A and B of one tenant, C of another (required)
	Admin   string // a tenant admin (optional; not a platform admin)
	App     string // an app-only token (optional)
	Expired string // an expired user token (optional)
}

// Config configures a verification.
type Config struct {
	Server string // the deployment's base URL
	Tokens Tokens
	// Rate is the most requests per second (default DefaultRate, at most
	// MaxRate).
	Rate float64
	// AllowRemote allows a server that is not on a loopback address
	// (`--yes`).
	AllowRemote bool
	// HTTPClient sends the requests (nil: a client that follows no
	// redirects). Its Timeout must be 0: each request has its own.
	HTTPClient *http.Client
	// Progress, when set, is told after each step.
	Progress func(Progress)

	now   func() time.Time                           // the rate limiter's clock (tests)
	sleep func(context.Context, time.Duration) error // its wait (tests)
}

// Progress is how far a verification is.
type Progress struct {
	Phase       string // setup, routes, websocket, mcp, agent, intact, cleanup
	Done, Total int
	Current     string // the step just done
}

const (
	DefaultRate = 20   // requests per second
	MaxRate     = 1000 // the most --rate allows
)

var (
	// ErrNotAllowed: the server's /readyz does not invite verification.
	ErrNotAllowed = errors.New(`the server does not allow verification: its /readyz does not say "verify": "allowed" (set IDFLOW_ALLOW_VERIFY=true on the server, docs/VERIFY.md)`)
	// ErrRemote: a server beyond loopback, without AllowRemote.
	ErrRemote = errors.New("the server is not on a loopback address: pass --yes to verify a remote deployment (it creates and removes test objects as the three users)")
)

// Caller names, as the report shows them.
const (
	nameA        = "A"
	nameB        = "B"
	nameC        = "C"
	nameAdmin    = "admin"
	nameApp      = "app"
	nameNone     = "none"
	nameTampered = "tampered"
	nameExpired  = "expired"
)

type role int

const (
	roleOwner  role = iota + 1 // A, whose objects everyone else tries to reach
	roleUser                   // B, C
	roleAdmin                  // a tenant admin
	roleApp                    // an app-only token
	roleUnauth                 // no token, a tampered one, an expired one
)

// caller is one identity the verifier acts as.
type caller struct {
	Name, Label string
	token       string
	role        role
	userID      string
	tenant      string
	sent        map[string]bool // A's (and C's) ids this caller named in a request
}

// verifier is one run.
type verifier struct {
	cfg     Config
	cl      *client
	rep     *Report
	ops     []operation
	a       *caller
	callers []*caller // everyone but A, in the report's column order
	byName  map[string]*caller
	fx      *fixture
	aborted bool // setup failed: only cleanup runs

	done, total int
	leftovers   []cleanup    // objects to remove at the end, in order
	mcpSessions []mcpSession // to end at the end
	rpcID       int          // the last JSON-RPC id sent
	wsHeader    bool         // run sockets carry the token in the Authorization header
}

// Run verifies the deployment at cfg.Server. It returns an error, and
// sends nothing but GET /readyz, when the server does not allow
// verification or the tokens are not what they must be; otherwise the
// report, whose Passed says whether every check passed.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	v, err := newVerifier(cfg)
	if err != nil {
		return nil, err
	}
	if err := v.preflight(ctx); err != nil {
		return nil, err
	}
	v.run(ctx)
	return v.rep, nil
}

func newVerifier(cfg Config) (*verifier, error) {
	base, err := url.Parse(strings.TrimSuffix(cfg.Server, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("--server %q: want an http:// or https:// URL", cfg.Server)
	}
	if !cfg.AllowRemote && !loopbackHost(base.Hostname()) {
		return nil, ErrRemote
	}
	t := cfg.Tokens
	if t.A == "" || t.B == "" || t.C == "" {
		return nil, errors.New("tokens of three users are required: A and B of one tenant, C of another (--user-a-token, --user-b-token, --user-c-token or their -cmd forms)")
	}
	if t.A == t.B || t.A == t.C || t.B == t.C {
		return nil, errors.New("users A, B and C need tokens of their own")
	}
	if cfg.Rate == 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Rate < 0 || cfg.Rate > MaxRate {
		return nil, fmt.Errorf("--rate %g: want 0 < rate <= %d requests per second", cfg.Rate, MaxRate)
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if cfg.sleep == nil {
		cfg.sleep = sleepCtx
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if hc.Timeout != 0 {
		return nil, errors.New("verify: the HTTP client's Timeout must be 0 (each request has its own deadline)")
	}
	tampered := tamper(t.A)
	v := &verifier{cfg: cfg, byName: map[string]*caller{}}
	v.cl = &client{base: base, hc: hc, lim: rate.NewLimiter(rate.Limit(cfg.Rate), 1), now: cfg.now, sleep: cfg.sleep,
		red: newRedactor(t.A, t.B, t.C, t.Admin, t.App, t.Expired, tampered)}
	add := func(name, label, token string, r role) *caller {
		c := &caller{Name: name, Label: label, token: token, role: r, sent: map[string]bool{}}
		v.byName[name] = c
		if r != roleOwner {
			v.callers = append(v.callers, c)
		}
		return c
	}
	v.a = add(nameA, "user A, owner of the test objects", t.A, roleOwner)
	add(nameB, "user B, of A's tenant", t.B, roleUser)
	add(nameC, "user C, of another tenant", t.C, roleUser)
	if t.Admin != "" {
		add(nameAdmin, "a tenant admin", t.Admin, roleAdmin)
	}
	if t.App != "" {
		add(nameApp, "an app-only token", t.App, roleApp)
	}
	add(nameNone, "no token at all", "", roleUnauth)
	add(nameTampered, "A's token with one signature byte changed", tampered, roleUnauth)
	if t.Expired != "" {
		add(nameExpired, "an expired token", t.Expired, roleUnauth)
	}
	v.rep = &Report{Server: base.String(), Rate: cfg.Rate, Started: cfg.now().UTC()}
	v.cl.onSend = v.noteSent
	return v, nil
}

// loopbackHost reports whether host is a loopback name or address.
func loopbackHost(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// tamper changes one byte of a JWT's signature (of any other token, one
// character), so the server must refuse it.
func tamper(tok string) string {
	if tok == "" {
		return ""
	}
	parts := strings.Split(tok, ".")
	if len(parts) == 3 {
		if sig, err := base64.RawURLEncoding.DecodeString(parts[2]); err == nil && len(sig) > 0 {
			sig[len(sig)/2] ^= 0x01
			parts[2] = base64.RawURLEncoding.EncodeToString(sig)
			return strings.Join(parts, ".")
		}
	}
	b := []byte(tok)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

// me is the part of GET /api/v1/me the verifier reads.
type me struct {
	UserID   string `json:"user_id"`
	TenantID string `json:"tenant_id"`
	Kind     string `json:"kind"`
}

// preflight asks /readyz for permission, then checks who each token is
// and reads the API surface. Nothing is written.
func (v *verifier) preflight(ctx context.Context) error {
	none := v.byName[nameNone]
	var ready struct {
		Verify string `json:"verify"`
	}
	r, err := v.cl.do(ctx, none, "GET", "/readyz", nil)
	if err != nil {
		return fmt.Errorf("GET /readyz: %w", err)
	}
	if r.status != http.StatusOK || json.Unmarshal(r.body, &ready) != nil || ready.Verify != "allowed" {
		return fmt.Errorf("%w; GET /readyz answered %d %s", ErrNotAllowed, r.status, firstLine(v.cl.red.String(string(r.body))))
	}
	who := func(c *caller) (me, error) {
		var m me
		_, err := v.cl.need(ctx, c, "GET /api/v1/me as "+c.Name, http.StatusOK, &m, "GET", "/api/v1/me", nil)
		return m, err
	}
	seen := map[string]string{}
	for _, c := range append([]*caller{v.a}, v.callers...) {
		switch c.role {
		case roleOwner, roleUser, roleAdmin:
			m, err := who(c)
			if err != nil {
				return fmt.Errorf("the token of %s (%s) is not accepted: %w", c.Name, c.Label, err)
			}
			if m.Kind != "user" || m.UserID == "" {
				return fmt.Errorf("the token of %s is not a user's (kind %q)", c.Name, m.Kind)
			}
			if other, dup := seen[m.UserID]; dup {
				return fmt.Errorf("%s and %s are the same user %q: every token must be another user's", other, c.Name, m.UserID)
			}
			seen[m.UserID] = c.Name
			c.userID, c.tenant = m.UserID, m.TenantID
		case roleApp:
			m, err := who(c)
			if err != nil {
				return fmt.Errorf("the app-only token is not accepted: %w", err)
			}
			if m.Kind != "app" {
				return fmt.Errorf("the app-only token acts as kind %q, not app", m.Kind)
			}
			c.userID, c.tenant = m.UserID, m.TenantID
		}
	}
	a, b, cc := v.a, v.byName[nameB], v.byName[nameC]
	if b.tenant != a.tenant {
		return fmt.Errorf("B must be a user of A's tenant (A: %q, B: %q)", a.tenant, b.tenant)
	}
	if cc.tenant == a.tenant {
		v.note(fmt.Sprintf("C is of A's tenant (%q): this deployment has no tenants to tell apart, so C is checked as another user of the same tenant.", a.tenant))
	}
	if ex := v.byName[nameExpired]; ex != nil {
		r, err := v.cl.do(ctx, ex, "GET", "/api/v1/me", nil)
		if err != nil {
			return fmt.Errorf("GET /api/v1/me with the expired token: %w", err)
		}
		if r.status >= 200 && r.status < 300 {
			return fmt.Errorf("the expired token is accepted (GET /api/v1/me answered %d): give a token that has expired", r.status)
		}
	} else {
		v.note("No expired token was given (--expired-token): a tampered copy of A's token stands for invalid credentials.")
	}
	if ad := v.byName[nameAdmin]; ad != nil {
		r, err := v.cl.do(ctx, ad, "GET", "/api/v1/admin/users", nil)
		if err != nil {
			return fmt.Errorf("GET /api/v1/admin/users as the admin: %w", err)
		}
		if r.status != http.StatusOK {
			return fmt.Errorf("the admin token's user cannot open admin routes (GET /api/v1/admin/users answered %d)", r.status)
		}
	} else {
		v.note("No admin token was given (--admin-token): admin routes are checked only as users without the role.")
	}
	if v.byName[nameApp] == nil {
		v.note("No app-only token was given (--app-token): app-only callers are not checked.")
	}
	r, err = v.cl.need(ctx, v.a, "GET /openapi.json", http.StatusOK, nil, "GET", "/openapi.json", nil)
	if err != nil {
		return err
	}
	if v.ops, err = parseOpenAPI(r.body); err != nil {
		return err
	}
	for _, c := range append([]*caller{v.a}, v.callers...) {
		v.rep.Callers = append(v.rep.Callers, CallerInfo{Name: c.Name, Label: c.Label, UserID: c.userID, Tenant: c.tenant})
	}
	v.fx = newFixture(v)
	v.rep.Marker = v.fx.word
	return nil
}

// task is one step of a run.
type task struct {
	phase, label string
	run          func(ctx context.Context)
	always       bool // runs even after setup failed (cleanup)
}

func (v *verifier) run(ctx context.Context) {
	tasks := v.setupTasks()
	tasks = append(tasks, v.routeTasks(false)...)
	tasks = append(tasks, v.wsTasks()...)
	tasks = append(tasks, v.mcpTasks()...)
	tasks = append(tasks, v.agentTasks()...)
	tasks = append(tasks, v.routeTasks(true)...) // deletes last: a broken one must not spoil the rest
	tasks = append(tasks, task{phase: "intact", label: "A's objects unchanged", run: v.intact})
	tasks = append(tasks, task{phase: "cleanup", label: "remove the test objects", run: v.cleanup, always: true})
	v.total = len(tasks)
	interrupted := false
	for _, t := range tasks {
		switch {
		case t.always:
			// Cleanup must happen even when the run was interrupted.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			t.run(cctx)
			cancel()
		case ctx.Err() != nil:
			if !interrupted {
				interrupted = true
				v.note("Interrupted: " + ctx.Err().Error() + "; the remaining checks did not run.")
				v.fail("controls", "the whole run", nameA, "every check runs", "interrupted", nil)
			}
		case !v.aborted:
			t.run(ctx)
		}
		v.done++
		if v.cfg.Progress != nil {
			v.cfg.Progress(Progress{Phase: t.phase, Done: v.done, Total: v.total, Current: t.label})
		}
	}
	v.rep.finish(v.cfg.now().UTC(), v.cl.sent)
}

// noteSent records the ids of A's (and C's) that c names in a request:
// those may come back in c's own answers (its audit trail, its messages)
// without anything leaking.
func (v *verifier) noteSent(c *caller, text string) {
	if v.fx == nil || c.role == roleOwner {
		return
	}
	for id := range v.fx.labels {
		if strings.Contains(text, id) {
			c.sent[id] = true
		}
	}
}

func (v *verifier) note(s string) { v.rep.Notes = append(v.rep.Notes, v.cl.red.String(s)) }

// randomWord is a word no one has written before: lowercase letters and
// digits, so every search index keeps it whole.
func randomWord(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}
