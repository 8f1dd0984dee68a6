// Package mcpclient connects idflow to the downstream MCP servers of
// IDFLOW_MCP_SERVERS_FILE with the official go-sdk client (Streamable
// HTTP), and offers their tools to the catalog as <server>__<tool>.
//
// Every request to a downstream server is made as one user, with that
// user's own credential (an idflow-signed assertion, the user's vault
// token, or a token exchanged from the user's sign-in): a downstream
// session belongs to one (user, server) pair and is never used for anyone
// else, and the credential is fetched for each HTTP request. See
// docs/DOWNSTREAM_MCP.md.
package mcpclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/connections"
	"github.com/idflow/idflow/tools"
	"github.com/idflow/idflow/vault"
)

// Defaults of Limits.
const (
	DefaultListTimeout       = 5 * time.Second
	DefaultCallTimeout       = 30 * time.Second
	DefaultListTTL           = 60 * time.Second
	DefaultIdleTimeout       = 5 * time.Minute
	DefaultMaxSessions       = 1000
	DefaultMaxLists          = 4096
	DefaultAssertionLifetime = 5 * time.Minute
)

// Bounds of what a downstream server may hand back.
const (
	maxToolsPerServer = 128
	maxListPages      = 10
	maxDescription    = 2048
	maxSchema         = 32 << 10
	maxResponse       = 4 << 20 // one HTTP response body
	maxErrorText      = 2000
	// maxIdleConnsPerHost: connections to one server kept open between
	// requests (all users' sessions with it share them).
	maxIdleConnsPerHost = 256
)

// Signer signs the assertions of `assertion` servers (*auth.Signer).
type Signer interface {
	Sign(claims any) (string, error)
	Issuer() string
}

// Connections hands out a user's own token for a provider
// (*connections.Manager): from the vault, or exchanged.
type Connections interface {
	Token(ctx context.Context, p idflow.Principal, provider string) (vault.Token, error)
	Providers() *connections.Registry
}

// Limits bounds time, memory and sessions. Zero fields take the defaults.
type Limits struct {
	ListTimeout time.Duration // one server's tools/list, session set-up included
	CallTimeout time.Duration // one tools/call, session set-up included
	ListTTL     time.Duration // how long a user's tool list of a server is reused
	IdleTimeout time.Duration // a session unused this long is closed
	MaxSessions int           // sessions across all users and servers
	MaxLists    int           // cached tool lists
	// AssertionLifetime is the exp of an assertion after its iat; at most
	// (and by default) 5 minutes.
	AssertionLifetime time.Duration
}

func (l Limits) withDefaults() Limits {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&l.ListTimeout, DefaultListTimeout)
	def(&l.CallTimeout, DefaultCallTimeout)
	def(&l.ListTTL, DefaultListTTL)
	def(&l.IdleTimeout, DefaultIdleTimeout)
	def(&l.AssertionLifetime, DefaultAssertionLifetime)
	l.AssertionLifetime = min(l.AssertionLifetime, DefaultAssertionLifetime)
	if l.MaxSessions <= 0 {
		l.MaxSessions = DefaultMaxSessions
	}
	if l.MaxLists <= 0 {
		l.MaxLists = DefaultMaxLists
	}
	return l
}

// Deps is what Servers needs.
type Deps struct {
	// Signer is required when a server uses assertion.
	Signer Signer
	// Connections is required when a server uses connection or exchange.
	Connections Connections
	// Transport sends the HTTP requests (default: a clone of
	// http.DefaultTransport). Redirects are never followed.
	Transport http.RoundTripper
	Log       *slog.Logger
	Now       func() time.Time
	Limits    Limits
}

// Servers is the downstream MCP servers as a tools.Source.
type Servers struct {
	servers  []*server
	deps     Deps
	lim      Limits
	log      *slog.Logger
	lists    *lru[listKey, []toolDef]
	sessions *table
}

var _ tools.Source = (*Servers)(nil)

// server is a configured server.
type server struct {
	Server
}

// allows reports whether p may use the server (groups gating).
func (s *server) allows(p idflow.Principal) bool {
	return s.Groups == nil || slices.ContainsFunc(s.Groups, p.HasGroup)
}

// toolDef is a downstream tool as listed for one user.
type toolDef struct {
	spec idflow.ToolSpec // Name is the exposed name
	name string          // the downstream's own name
}

type listKey struct{ owner, server string }

// New checks cfg against deps (a connection server's provider must be
// connectable, an exchange server's an exchange provider) and returns the
// servers. No request is sent until a user's tools are listed.
func New(cfg Config, deps Deps) (*Servers, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// Keep a connection per concurrent call: net/http's default of 2
		// idle per host made every call past the second dial (and on TLS
		// shake hands) anew (docs/BENCHMARKS.md, "Agent runtime").
		t.MaxIdleConnsPerHost = maxIdleConnsPerHost
		deps.Transport = t
	}
	lim := deps.Limits.withDefaults()
	s := &Servers{deps: deps, lim: lim, log: deps.Log,
		lists: newLRU[listKey, []toolDef](lim.MaxLists, deps.Now)}
	s.sessions = newTable(lim.MaxSessions, lim.IdleTimeout, deps.Now)
	for _, sc := range cfg.Servers {
		if err := checkAuth(sc, deps); err != nil {
			return nil, fmt.Errorf("server %q: %w", sc.Name, err)
		}
		sc.Groups = slices.Clone(sc.Groups)
		s.servers = append(s.servers, &server{Server: sc})
	}
	return s, nil
}

func checkAuth(sc Server, deps Deps) error {
	switch sc.Auth.Type {
	case AuthAssertion:
		if deps.Signer == nil {
			return errors.New("auth type assertion needs idflow's assertion signer")
		}
	case AuthConnection, AuthExchange:
		if deps.Connections == nil {
			return fmt.Errorf("auth type %s needs provider %q, but no providers are configured (IDFLOW_PROVIDERS_FILE)", sc.Auth.Type, sc.Auth.Provider)
		}
		prov, ok := deps.Connections.Providers().Get(sc.Auth.Provider)
		switch {
		case !ok:
			return fmt.Errorf("provider %q is not in IDFLOW_PROVIDERS_FILE", sc.Auth.Provider)
		case sc.Auth.Type == AuthConnection && !prov.Connectable():
			return fmt.Errorf("provider %q exchanges tokens; use auth type exchange", sc.Auth.Provider)
		case sc.Auth.Type == AuthExchange && prov.Connectable():
			return fmt.Errorf("provider %q is connected by its users, not exchanged; use auth type connection", sc.Auth.Provider)
		}
	}
	return nil
}

// Names lists the configured servers.
func (s *Servers) Names() []string {
	out := make([]string, len(s.servers))
	for i, srv := range s.servers {
		out[i] = srv.Name
	}
	return out
}

// OpenSessions is the number of downstream sessions held (a gauge).
func (s *Servers) OpenSessions() int { return s.sessions.len() }

// Close ends every downstream session.
func (s *Servers) Close() error {
	s.sessions.close()
	return nil
}

// ownerKey is who owns a session and a cached list: the user, with issuer
// and tenant (two issuers may hand out the same sub), as /mcp does.
func ownerKey(p idflow.Principal) (string, error) {
	if _, err := p.Owner(); err != nil {
		return "", err
	}
	return p.Issuer + "\x00" + p.TenantID + "\x00" + p.UserID, nil
}

// Tools answers the tools p may use: those of every server p's groups
// allow, each listed through p's own session (cached for ListTTL). The
// servers are asked in parallel, each within ListTimeout; one that fails
// is left out (and logged) without holding up the others. A connection
// server p has not connected offers one tool, <server>__connect, which
// answers how to connect.
func (s *Servers) Tools(ctx context.Context, p idflow.Principal) ([]tools.Tool, error) {
	owner, err := ownerKey(p)
	if err != nil {
		return nil, err
	}
	per := make([][]tools.Tool, len(s.servers))
	var wg sync.WaitGroup
	for i, srv := range s.servers {
		if !srv.allows(p) {
			continue
		}
		wg.Go(func() { per[i] = s.serverTools(ctx, p, owner, srv) })
	}
	wg.Wait()
	var out []tools.Tool
	for _, ts := range per {
		out = append(out, ts...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Tool answers the tool name p may use, found on the one server its
// prefix names (tools.Finder): a call asks that server's list (cached),
// not every server's.
func (s *Servers) Tool(ctx context.Context, p idflow.Principal, name string) (tools.Tool, bool, error) {
	owner, err := ownerKey(p)
	if err != nil {
		return tools.Tool{}, false, err
	}
	prefix, _, ok := strings.Cut(name, "__")
	if !ok {
		return tools.Tool{}, false, nil
	}
	for _, srv := range s.servers {
		if srv.Name != prefix || !srv.allows(p) {
			continue
		}
		for _, t := range s.serverTools(ctx, p, owner, srv) {
			if t.Name == name {
				return t, true, nil
			}
		}
	}
	return tools.Tool{}, false, nil
}

func (s *Servers) serverTools(ctx context.Context, p idflow.Principal, owner string, srv *server) []tools.Tool {
	k := listKey{owner, srv.Name}
	defs, ok := s.lists.get(k)
	if !ok {
		lctx, cancel := context.WithTimeout(ctx, s.lim.ListTimeout)
		defer cancel()
		var err error
		if defs, err = s.list(lctx, p, owner, srv); err != nil {
			if needsConnect(err) {
				return []tools.Tool{s.connectTool(srv)}
			}
			level := slog.LevelWarn
			if errors.Is(err, connections.ErrNoInboundToken) {
				level = slog.LevelDebug // every turn of a browser session or a background run: not news
			}
			s.log.Log(ctx, level, "downstream mcp server left out of the tool list", "server", srv.Name,
				"user_id", p.UserID, "err", err)
			return nil
		}
		s.lists.put(k, defs, s.lim.ListTTL)
	}
	out := make([]tools.Tool, len(defs))
	for i, d := range defs {
		out[i] = tools.Tool{ToolSpec: d.spec, Run: s.runner(srv, d.name)}
	}
	return out
}

// list asks srv for its tools as p.
func (s *Servers) list(ctx context.Context, p idflow.Principal, owner string, srv *server) ([]toolDef, error) {
	var defs []toolDef
	err := s.withSession(ctx, p, owner, srv, func(ctx context.Context, cs *mcp.ClientSession) error {
		defs = defs[:0]
		seen := map[string]bool{}
		cursor := ""
		for range maxListPages {
			res, err := cs.ListTools(ctx, &mcp.ListToolsParams{Cursor: cursor})
			if err != nil {
				return err
			}
			for _, t := range res.Tools {
				if len(defs) == maxToolsPerServer {
					s.log.WarnContext(ctx, "downstream mcp server lists too many tools; the rest are skipped",
						"server", srv.Name, "max", maxToolsPerServer)
					return nil
				}
				d, err := s.toolDef(srv, t)
				if err == nil && seen[d.spec.Name] {
					err = errors.New("listed twice")
				}
				if err != nil {
					s.log.WarnContext(ctx, "downstream mcp tool skipped", "server", srv.Name,
						"tool", truncate(t.Name, 200), "reason", err.Error())
					continue
				}
				seen[d.spec.Name] = true
				defs = append(defs, d)
			}
			if res.NextCursor == "" {
				return nil
			}
			cursor = res.NextCursor
		}
		s.log.WarnContext(ctx, "downstream mcp server has more tool pages than read", "server", srv.Name, "pages", maxListPages)
		return nil
	})
	return defs, err
}

// toolDef turns a listed tool into a catalog entry, or says why it cannot
// be one.
func (s *Servers) toolDef(srv *server, t *mcp.Tool) (toolDef, error) {
	name, ok := exposedName(srv.Name, t.Name)
	if !ok {
		return toolDef{}, fmt.Errorf("%s__<tool> must be letters, digits, '_' or '-' and at most %d characters", srv.Name, MaxToolName)
	}
	params := json.RawMessage(`{"type":"object","properties":{}}`)
	if t.InputSchema != nil {
		b, err := json.Marshal(t.InputSchema)
		if err != nil {
			return toolDef{}, fmt.Errorf("input schema: %w", err)
		}
		if len(b) > maxSchema {
			return toolDef{}, fmt.Errorf("input schema larger than %d bytes", maxSchema)
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(b, &obj) != nil {
			return toolDef{}, errors.New("input schema is not a JSON object")
		}
		params = b
	}
	title := t.Title
	if title == "" && t.Annotations != nil {
		title = t.Annotations.Title
	}
	return toolDef{name: t.Name, spec: idflow.ToolSpec{
		Name: name, Server: serverOf(name), Title: truncate(title, 200), Description: truncate(t.Description, maxDescription),
		Parameters: params, ReadOnly: t.Annotations != nil && t.Annotations.ReadOnlyHint,
	}}, nil
}

// connectTool stands in for the tools of a connection server p has not
// connected: the model (or an MCP client) learns how to connect instead
// of not seeing the server at all.
func (s *Servers) connectTool(srv *server) tools.Tool {
	prov := srv.Auth.Provider
	return tools.Tool{
		ToolSpec: idflow.ToolSpec{
			Name:   srv.Name + "__connect",
			Server: srv.Name,
			Title:  "Connect " + prov,
			Description: fmt.Sprintf("The tools of %s need your own %s connection, which you have not made. "+
				"Calling this tool answers how to connect it; it does nothing else.", srv.Name, prov),
			Parameters: json.RawMessage(`{"type":"object","properties":{}}`),
			ReadOnly:   true,
		},
		Run: func(ctx context.Context, p idflow.Principal, _ json.RawMessage) (any, error) {
			if _, err := ownerKey(p); err != nil {
				return nil, err
			}
			if !srv.allows(p) {
				return nil, notAllowed(srv)
			}
			if _, err := s.deps.Connections.Token(ctx, p, prov); err != nil {
				return nil, credentialError(srv, err)
			}
			return map[string]any{"connected": true, "note": fmt.Sprintf("%s is connected: its tools are offered from now on", prov)}, nil
		},
	}
}

// runner is the Run of one downstream tool. It acts as the Principal it is
// given, through that user's own session.
func (s *Servers) runner(srv *server, tool string) func(context.Context, idflow.Principal, json.RawMessage) (any, error) {
	return func(ctx context.Context, p idflow.Principal, args json.RawMessage) (any, error) {
		owner, err := ownerKey(p)
		if err != nil {
			return nil, err
		}
		if !srv.allows(p) {
			return nil, notAllowed(srv)
		}
		if len(strings.TrimSpace(string(args))) == 0 {
			args = json.RawMessage(`{}`)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(args, &obj); err != nil || obj == nil {
			return nil, idflow.Errorf(idflow.EINVALID, "the arguments of %s__%s must be a JSON object", srv.Name, tool)
		}
		cctx, cancel := context.WithTimeout(ctx, s.lim.CallTimeout)
		defer cancel()
		var res *mcp.CallToolResult
		err = s.withSession(cctx, p, owner, srv, func(ctx context.Context, cs *mcp.ClientSession) error {
			var err error
			res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
			return err
		})
		if err != nil {
			return nil, err
		}
		return result(srv.Name+"__"+tool, res)
	}
}

// withSession runs fn on p's session with srv: the credential is checked
// first (a user who must connect gets that answer, and the server gets no
// request), then the session is set up when needed. A session the server
// ended is set up again once, and fn retried: the server did not run it.
func (s *Servers) withSession(ctx context.Context, p idflow.Principal, owner string, srv *server,
	fn func(context.Context, *mcp.ClientSession) error) error {
	sess, err := s.sessions.acquire(sessionKey{owner, srv.Name}, func() *session {
		return newSession(s, srv, owner, p.UserID)
	})
	if err != nil {
		return err
	}
	defer s.sessions.release(sess)
	if sess.owner != owner || sess.userID != p.UserID {
		return idflow.Errorf(idflow.EINTERNAL, "a downstream session of another user was offered; refused")
	}
	c := newCall(ctx, p)
	ctx = withCall(ctx, c)
	if _, err := sess.credential(ctx, c); err != nil {
		return credentialError(srv, err)
	}
	for attempt := 0; ; attempt++ {
		cs, err := sess.client(ctx, c)
		if err == nil {
			c.reset()
			err = fn(ctx, cs)
			if err == nil {
				return nil
			}
		}
		gone := c.sessionGone.Load()
		refused := c.status.Load() == http.StatusUnauthorized || c.status.Load() == http.StatusForbidden
		var rpc *jsonrpc.Error
		if errors.As(err, &rpc) && !gone && !refused && cs != nil {
			return rpcError(srv, rpc) // the server answered: the session is fine
		}
		if cs != nil {
			sess.drop(cs)
		}
		if gone && attempt == 0 && ctx.Err() == nil {
			continue
		}
		return s.transportError(ctx, srv, c, err)
	}
}

// needsConnect reports whether err asks the user to connect a provider.
func needsConnect(err error) bool {
	return errors.Is(err, vault.ErrNotConnected) || errors.Is(err, vault.ErrNeedsConsent)
}

func notAllowed(srv *server) error {
	return idflow.Errorf(idflow.EFORBIDDEN, "you may not use the tools of %s (it is limited to some groups)", srv.Name)
}

// credentialError is the tool error for a credential p does not have.
func credentialError(srv *server, err error) error {
	prov := srv.Auth.Provider
	switch {
	case errors.Is(err, vault.ErrNotConnected):
		return idflow.WrapError(idflow.ECONFLICT, fmt.Sprintf("connect %s first: POST /api/v1/connections/%s/connect", prov, prov), err)
	case errors.Is(err, vault.ErrNeedsConsent):
		return idflow.WrapError(idflow.ECONFLICT, fmt.Sprintf(
			"connect %s first (your connection needs your consent again): POST /api/v1/connections/%s/connect", prov, prov), err)
	case errors.Is(err, connections.ErrNoInboundToken):
		return idflow.WrapError(idflow.EFORBIDDEN, fmt.Sprintf(
			"%s acts with a token exchanged from your own sign-in token, which this call does not carry "+
				"(background runs and browser sessions have none); call it from a request signed in with a bearer token", srv.Name), err)
	}
	var e *idflow.Error
	if errors.As(err, &e) {
		return err
	}
	return idflow.WrapError(idflow.EUNAVAILABLE, fmt.Sprintf("no credential for %s could be obtained", srv.Name), err)
}

// transportError is the tool error when srv could not be used.
func (s *Servers) transportError(ctx context.Context, srv *server, c *call, err error) error {
	if cerr := c.credErr(); cerr != nil {
		return credentialError(srv, cerr)
	}
	switch st := c.status.Load(); {
	case st == http.StatusUnauthorized || st == http.StatusForbidden:
		return idflow.WrapError(idflow.EFORBIDDEN, fmt.Sprintf("%s refused the credential idflow sent for you (HTTP %d)", srv.Name, st), err)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return idflow.WrapError(idflow.EUNAVAILABLE, fmt.Sprintf("%s did not answer in time", srv.Name), err)
	}
	if ctx.Err() != nil {
		return idflow.WrapError(idflow.EUNAVAILABLE, "the request was cancelled", ctx.Err())
	}
	var e *idflow.Error
	if errors.As(err, &e) {
		return err
	}
	return idflow.WrapError(idflow.EUNAVAILABLE, fmt.Sprintf("%s is unavailable: it could not be reached or broke off the session", srv.Name), err)
}

// rpcError is a JSON-RPC error answer of srv.
func rpcError(srv *server, e *jsonrpc.Error) error {
	code := idflow.EUNAVAILABLE
	switch e.Code {
	case jsonrpc.CodeInvalidRequest, jsonrpc.CodeMethodNotFound, jsonrpc.CodeInvalidParams:
		code = idflow.EINVALID
	}
	return idflow.WrapError(code, fmt.Sprintf("%s refused the request: %s", srv.Name, truncate(e.Message, maxErrorText)), e)
}

// result turns a tool's answer into a JSON value: its structured content
// when it has some, else its text (one string), else a summary of its
// content items (binary data is left out). An error result is a tool
// error with the downstream's text.
func result(tool string, res *mcp.CallToolResult) (any, error) {
	if res == nil {
		return nil, idflow.Errorf(idflow.EUNAVAILABLE, "%s answered nothing", tool)
	}
	var texts []string
	var items []map[string]any
	for _, c := range res.Content {
		switch c := c.(type) {
		case *mcp.TextContent:
			texts = append(texts, c.Text)
			items = append(items, map[string]any{"type": "text", "text": c.Text})
		case *mcp.ImageContent:
			items = append(items, map[string]any{"type": "image", "mime_type": c.MIMEType, "bytes": len(c.Data)})
		case *mcp.AudioContent:
			items = append(items, map[string]any{"type": "audio", "mime_type": c.MIMEType, "bytes": len(c.Data)})
		case *mcp.ResourceLink:
			items = append(items, map[string]any{"type": "resource_link", "uri": c.URI, "name": c.Name, "mime_type": c.MIMEType})
		case *mcp.EmbeddedResource:
			item := map[string]any{"type": "resource"}
			if r := c.Resource; r != nil {
				item["uri"], item["mime_type"] = r.URI, r.MIMEType
				if r.Text != "" {
					item["text"] = r.Text
				} else {
					item["bytes"] = len(r.Blob)
				}
			}
			items = append(items, item)
		}
	}
	if res.IsError {
		msg := strings.Join(texts, "\n")
		if msg == "" {
			msg = "an error without a message"
		}
		return nil, idflow.Errorf(idflow.EINVALID, "%s failed: %s", tool, truncate(msg, maxErrorText))
	}
	switch {
	case res.StructuredContent != nil:
		return res.StructuredContent, nil
	case len(texts) == len(items) && len(texts) > 0:
		return strings.Join(texts, "\n"), nil
	case len(items) == 0:
		return map[string]any{}, nil
	}
	return map[string]any{"content": items}, nil
}

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// serverOf is the server part of a tool name <server>__<tool>.
func serverOf(name string) string {
	server, _, _ := strings.Cut(name, "__")
	return server
}
