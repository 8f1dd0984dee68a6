// Package mcp is idflow's MCP server: the Streamable HTTP transport of
// github.com/modelcontextprotocol/go-sdk mounted at /mcp, acting as an OAuth
// protected resource (RFC 9728, the MCP authorization spec).
//
// MCP servers are often deployed with one static token shared by every
// user, so every tool acts as one identity. Here each call acts as its
// caller, three ways:
//
//   - every HTTP request to /mcp is authenticated by httpapi before it gets
//     here (a bearer token whose aud is an API audience or <public url>/mcp);
//     a tool acts as the Principal of the request that carried the call,
//     never as whoever opened the session and never as an argument says;
//   - an MCP session belongs to the user who opened it: a request on it with
//     another user's token answers 404, exactly like an unknown session, and
//     is audited;
//   - every tool is a tool of the catalog (package tools), called with that
//     Principal: the policy, the identity rule and the audit are the same
//     as for agent turns and workflow steps, and the service layer scopes
//     every object to the owner like any HTTP handler.
package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	sdkauth "github.com/modelcontextprotocol/go-sdk/auth"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/service"
	"github.com/idflow/idflow/tools"
)

// Path is where the MCP endpoint is mounted.
const Path = "/mcp"

// MetadataPath is the RFC 9728 metadata of the /mcp resource (the
// path-suffixed form; the bare /.well-known/oauth-protected-resource serves
// the same document).
const MetadataPath = "/.well-known/oauth-protected-resource" + Path

// AllTools, as a key of Config.ToolScopes, names scopes every tool needs.
const AllTools = "*"

// Config configures the MCP server.
type Config struct {
	// PublicURL is the external base URL; the resource is PublicURL + "/mcp".
	PublicURL string
	// AuthorizationServers are the issuers clients get tokens from.
	AuthorizationServers []string
	// ToolScopes maps a tool name (or AllTools) to the scopes a token must
	// carry to call it over /mcp: a built-in tool, or a downstream one
	// (<server>__<tool>). Empty: no tool needs a scope beyond what
	// authentication already requires.
	ToolScopes map[string][]string
	// Scopes are advertised in scopes_supported and in the scope parameter
	// of a 401 challenge, besides every scope of ToolScopes.
	Scopes []string
	// SessionTimeout closes sessions idle this long (default 30 minutes):
	// the SDK's timer, which runs while no POST is under way on a session.
	SessionTimeout time.Duration
	// MaxSessionsPerUser bounds a user's sessions and, separately, their
	// open GET streams (default 20). See sessions.
	MaxSessionsPerUser int
	// Now is the clock that orders sessions by last use (default time.Now).
	Now func() time.Time
	// MaxBodyBytes bounds a POST body (default 10 MiB).
	MaxBodyBytes int64
	// Version is reported as the server's implementation version.
	Version string
}

// Deps are the MCP server's collaborators.
type Deps struct {
	Svc   *service.Service
	Tools Catalog // the tools /mcp lists and calls
	// Connect starts a user's connect flow to a provider (connections.Manager);
	// nil: a tool that needs a connection only answers a tool error.
	Connect Connector
	Log     *slog.Logger
}

// Server is the /mcp endpoint.
type Server struct {
	cfg     Config
	svc     *service.Service
	tools   Catalog
	connect Connector
	log     *slog.Logger

	sdk      *sdk.Server
	handler  http.Handler // the SDK's streamable handler behind the TokenInfo bridge
	sessions *sessions
	scopes   []string // advertised
	metadata []byte
}

// New returns the MCP server with every tool registered.
func New(cfg Config, d Deps) (*Server, error) {
	if cfg.PublicURL == "" {
		return nil, errors.New("mcp: a public URL is required")
	}
	if d.Svc == nil || d.Tools == nil {
		return nil, errors.New("mcp: the service and the tool catalog are required")
	}
	cfg.PublicURL = strings.TrimSuffix(cfg.PublicURL, "/")
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 30 * time.Minute
	}
	if cfg.MaxSessionsPerUser <= 0 {
		cfg.MaxSessionsPerUser = 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 10 << 20
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, svc: d.Svc, tools: d.Tools, connect: d.Connect, log: d.Log,
		sessions: newSessions(cfg.MaxSessionsPerUser, cfg.Now)}

	names := []string{}
	for name := range cfg.ToolScopes {
		downstream := tools.ValidName(name) && strings.Contains(name, "__")
		if name != AllTools && !downstream && !slices.Contains(tools.BuiltinNames(), name) {
			return nil, fmt.Errorf("mcp: scopes configured for unknown tool %q (built-in tools: %s; downstream tools are <server>__<tool>)",
				name, strings.Join(tools.BuiltinNames(), ", "))
		}
		if name != AllTools {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	s.scopes = slices.Clone(cfg.Scopes)
	for _, name := range append([]string{AllTools}, names...) {
		for _, sc := range cfg.ToolScopes[name] {
			if !slices.Contains(s.scopes, sc) {
				s.scopes = append(s.scopes, sc)
			}
		}
	}
	meta := struct {
		Resource               string   `json:"resource"`
		AuthorizationServers   []string `json:"authorization_servers"`
		ScopesSupported        []string `json:"scopes_supported"`
		BearerMethodsSupported []string `json:"bearer_methods_supported"`
		ResourceName           string   `json:"resource_name"`
	}{s.Resource(), nonNil(cfg.AuthorizationServers), nonNil(s.scopes), []string{"header"}, "idflow MCP"}
	var err error
	if s.metadata, err = json.Marshal(meta); err != nil {
		return nil, err
	}

	s.sdk = sdk.NewServer(&sdk.Implementation{Name: "idflow", Title: "idflow", Version: cfg.Version}, &sdk.ServerOptions{
		Instructions: "idflow's tools act as the user whose bearer token carried the call; no argument can name another user.",
		Logger:       d.Log,
		Capabilities: &sdk.ServerCapabilities{Tools: &sdk.ToolCapabilities{}},
		// tools/list is filtered per user: no client or intermediary may
		// reuse one user's list for another.
		SetCacheable: func(_ context.Context, _ sdk.Request, c *sdk.Cacheable) { c.TTLMs, c.CacheScope = 0, "private" },
	})
	s.sdk.AddReceivingMiddleware(s.serveTools, s.trackSessions)

	streamable := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s.sdk }, &sdk.StreamableHTTPOptions{
		Logger:              d.Log,
		SessionTimeout:      cfg.SessionTimeout,
		MaxRequestBodyBytes: cfg.MaxBodyBytes,
		// With an event store the SDK primes each POST's SSE stream (an event
		// id and empty data, for clients of 2025-11-25 or later) and replays
		// a stream to a GET with Last-Event-ID. Bounded (10 MiB for the
		// process, oldest dropped first); a replay is only ever served on
		// the session's own, owner-checked requests.
		EventStore: sdk.NewMemoryEventStore(nil),
		// The SDK's DNS-rebinding check compares the Host header with the
		// loopback listener, which refuses every request a reverse proxy on
		// the same host forwards with the public Host. httpapi checks Origin
		// instead, as the transport spec says, before authentication.
		DisableLocalhostProtection: true,
	})
	// The SDK reads who the caller is from its own TokenInfo, which only its
	// RequireBearerToken middleware can attach. The "verifier" here does not
	// verify again: it hands over the Principal httpapi already verified for
	// this very request. The SDK then binds each session to the user id too
	// (a second, independent check after ours) and gives every tool call the
	// TokenInfo of the request that carried it.
	s.handler = sdkauth.RequireBearerToken(s.tokenInfo, &sdkauth.RequireBearerTokenOptions{
		ResourceMetadataURL: s.MetadataURL(),
	})(streamable)
	return s, nil
}

// Resource is the resource identifier: <public url>/mcp, also the audience
// of tokens minted for it (RFC 8707).
func (s *Server) Resource() string { return s.cfg.PublicURL + Path }

// MetadataURL is where the protected-resource metadata is served.
func (s *Server) MetadataURL() string { return s.cfg.PublicURL + MetadataPath }

// Scopes are the scopes advertised in the metadata.
func (s *Server) Scopes() []string { return slices.Clone(s.scopes) }

// ServeMetadata answers the RFC 9728 protected-resource metadata.
func (s *Server) ServeMetadata(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=300")
	// Public discovery data (RFC 9728 §3): any origin may read it.
	h.Set("Access-Control-Allow-Origin", "*")
	_, err := w.Write(s.metadata)
	return err
}

// Challenge is the WWW-Authenticate value of a 401 from /mcp: where the
// metadata is, and which scopes to ask for (MCP authorization spec;
// RFC 9728 §5.1, RFC 6750 §3).
func (s *Server) Challenge(r *http.Request, err error) string {
	params := []string{`resource_metadata="` + s.MetadataURL() + `"`}
	if len(s.scopes) > 0 {
		params = append(params, `scope="`+strings.Join(s.scopes, " ")+`"`)
	}
	if r.Header.Get("Authorization") != "" {
		params = append(params, `error="invalid_token"`)
	}
	return "Bearer " + strings.Join(params, ", ")
}

// ServeMCP serves one request to /mcp for p, the Principal httpapi verified
// for this request (it is also in r's context). Errors it returns are
// answered as problem+json by httpapi.
func (s *Server) ServeMCP(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
	if _, err := p.Owner(); err != nil {
		return err // an app-only token never reaches a tool
	}
	if p.AuthMethod != idflow.AuthBearer && p.AuthMethod != idflow.AuthPersonalToken {
		// MCP authorization: the token (an access token, or a personal
		// access token with the mcp scope) travels in the Authorization header.
		return idflow.Errorf(idflow.EUNAUTHORIZED, "the MCP endpoint takes a bearer token in the Authorization header")
	}
	owner := ownerKey(p)
	sid := r.Header.Get(sessionHeader)
	switch {
	case sid != "":
		done, err := s.sessions.begin(sid, owner, r.Method == http.MethodGet)
		switch {
		case errors.Is(err, errSessionForeign):
			// Someone else's session: the same answer as an unknown one, and audited.
			s.svc.Audit(r.Context(), p, "mcp.session", "mcp_session/"+sessionDigest(sid), err)
			s.log.WarnContext(r.Context(), "mcp session used by another user", "user_id", p.UserID, "session", sessionDigest(sid))
			return err
		case errors.Is(err, errTooManyStreams):
			w.Header().Set("Retry-After", retryAfter)
			s.log.WarnContext(r.Context(), "mcp stream refused: per-user limit", "user_id", p.UserID, "limit", s.cfg.MaxSessionsPerUser)
			return err
		case err != nil:
			return err
		}
		defer done()
	case r.Method == http.MethodPost:
		// A POST without a session may open one: it takes a slot first.
		evicted, release, err := s.sessions.reserve(owner)
		if err != nil {
			w.Header().Set("Retry-After", retryAfter)
			s.log.WarnContext(r.Context(), "mcp session refused: per-user limit, none idle", "user_id", p.UserID, "limit", s.cfg.MaxSessionsPerUser)
			return err
		}
		defer release()
		if evicted != nil {
			s.log.InfoContext(r.Context(), "mcp session closed: per-user limit, least recently used idle one", "user_id", p.UserID, "session", sessionDigest(evicted.id))
			_ = evicted.ss.Close()
		}
	}
	switch r.Method {
	case http.MethodPost:
		if err := s.checkScopes(w, r, p); err != nil {
			return err
		}
	case http.MethodGet:
		// The server-to-client stream lives only as long as the token that
		// opened it; the client reconnects with a fresh one, authenticated anew.
		if !p.ExpiresAt.IsZero() {
			ctx, cancel := context.WithDeadline(r.Context(), p.ExpiresAt)
			defer cancel()
			r = r.WithContext(ctx)
		}
	}
	rec := &retryWriter{ResponseWriter: w, retry: sseRetry,
		getRetry: r.Method == http.MethodGet && r.Header.Get("Mcp-Protocol-Version") >= protocolPriming}
	s.handler.ServeHTTP(rec, r)
	return nil
}

// sseRetry is the SSE retry field: how long a client waits before it
// reconnects a stream the server closed.
const sseRetry = 2 * time.Second

// retryAfter is the Retry-After of a 429 for a full session or stream
// table: the seconds in which an idle session or a stream may free a slot.
const retryAfter = "5"

// trackSessions records each session the SDK opens in the session table,
// with the user who opened it, before the id leaves the server in the
// initialize response.
func (s *Server) trackSessions(next sdk.MethodHandler) sdk.MethodHandler {
	return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
		if method == "initialize" {
			ss, isServer := req.GetSession().(*sdk.ServerSession)
			p, _, ok := principalOf(req)
			if isServer && ok && ss.ID() != "" {
				s.sessions.add(ss, ownerKey(p))
			}
		}
		return next(ctx, method, req)
	}
}

// Keys of the SDK TokenInfo's Extra: what a tool needs to act.
const (
	extraPrincipal = "idflow.principal"
	extraRequest   = "idflow.request"
)

// tokenInfo bridges httpapi's verified Principal to the SDK (see New).
func (s *Server) tokenInfo(ctx context.Context, _ string, r *http.Request) (*sdkauth.TokenInfo, error) {
	p, ok := idflow.FromContext(r.Context())
	if !ok || p.Kind != idflow.KindUser || p.UserID == "" {
		return nil, sdkauth.ErrInvalidToken
	}
	return &sdkauth.TokenInfo{
		UserID: ownerKey(p), Scopes: slices.Clone(p.Scopes), Expiration: p.ExpiresAt,
		Extra: map[string]any{extraPrincipal: p, extraRequest: idflow.RequestInfoFrom(r.Context())},
	}, nil
}

// principalOf returns the Principal of the HTTP request that carried req.
// The handler context is not used: the SDK derives it from the request that
// opened the session, so it would name that request's Principal.
func principalOf(req sdk.Request) (p idflow.Principal, info idflow.RequestInfo, ok bool) {
	extra := req.GetExtra()
	if extra == nil || extra.TokenInfo == nil {
		return p, info, false
	}
	found, isPrincipal := extra.TokenInfo.Extra[extraPrincipal].(idflow.Principal)
	if !isPrincipal || found.Kind != idflow.KindUser || found.UserID == "" {
		return p, info, false
	}
	info, _ = extra.TokenInfo.Extra[extraRequest].(idflow.RequestInfo)
	return found, info, true
}

// checkScopes refuses, before the SDK sees it, a tools/call for which the
// token lacks a configured scope: 403 with an insufficient_scope challenge
// naming the scopes to ask for (MCP authorization spec, step-up). The body
// is put back for the SDK.
func (s *Server) checkScopes(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
	if len(s.cfg.ToolScopes) == 0 {
		return nil
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err // a *http.MaxBytesError answers 413
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	for _, name := range calledTools(body) {
		if !tools.ValidName(name) {
			continue // the catalog refuses it; such a name never reaches a header
		}
		missing := s.missingScopes(p, name)
		if len(missing) == 0 {
			continue
		}
		err := idflow.Errorf(idflow.EFORBIDDEN, "the tool %s needs the scope %s", name, strings.Join(missing, " "))
		s.svc.Audit(r.Context(), p, tools.ActionCall, "tool/"+name, err)
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer error="insufficient_scope", scope="%s", resource_metadata="%s", error_description="the tool %s needs more scope"`,
			strings.Join(s.requiredScopes(name), " "), s.MetadataURL(), name))
		return err
	}
	return nil
}

// calledTools returns the tool names of the tools/call requests in a
// JSON-RPC message or batch. Anything it cannot read is left to the SDK,
// which refuses it.
func calledTools(body []byte) []string {
	type message struct {
		Method string          `json:"method"`
		Params json.RawMessage `json:"params"`
	}
	var msgs []message
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		if json.Unmarshal(body, &msgs) != nil {
			return nil
		}
	} else {
		var m message
		if json.Unmarshal(body, &m) != nil {
			return nil
		}
		msgs = []message{m}
	}
	var names []string
	for _, m := range msgs {
		if m.Method != "tools/call" {
			continue
		}
		var params struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(m.Params, &params) == nil {
			names = append(names, params.Name)
		}
	}
	return names
}

// requiredScopes are the scopes a call of name needs.
func (s *Server) requiredScopes(name string) []string {
	return append(slices.Clone(s.cfg.ToolScopes[AllTools]), s.cfg.ToolScopes[name]...)
}

// missingScopes are the required scopes of name that p's token lacks.
func (s *Server) missingScopes(p idflow.Principal, name string) []string {
	var missing []string
	for _, sc := range s.requiredScopes(name) {
		if !p.HasScope(sc) {
			missing = append(missing, sc)
		}
	}
	return missing
}

// CloseUser ends every MCP session of a disabled user, with its open
// streams (package lifecycle calls it on every replica); their next
// request would be refused anyway.
func (s *Server) CloseUser(ref idflow.UserRef) {
	for _, ss := range s.sessions.takeUser(ref.TenantID, ref.UserID) {
		_ = ss.ss.Close()
	}
}

// Close ends every MCP session, releasing their open SSE streams, so that
// an HTTP server shutting down is not held up by them.
func (s *Server) Close() {
	var open []*sdk.ServerSession
	for ss := range s.sdk.Sessions() {
		open = append(open, ss)
	}
	for _, ss := range open {
		_ = ss.Close()
	}
}

func nonNil(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}
