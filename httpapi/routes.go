package httpapi

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/budget"
	"github.com/idflow/idflow/ratelimit"
)

// access is who may call a route. Every route names one; there is no default.
type access int

const (
	accessOpen     access = iota + 1 // no credentials (docs/SECURITY.md lists them)
	accessAny                        // any verified Principal, user or app
	accessUser                       // a verified user; app-only tokens get 403
	accessAdmin                      // a user with the admin or the platform admin role
	accessInternal                   // an app-only token of an allowlisted client
	accessSCIM                       // an app-only token of a provisioning client (IDFLOW_SCIM_CLIENTS), for its own tenant
)

// handler serves an authenticated route. It never sees a request without a
// verified Principal, and returns errors instead of writing them.
type handler func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error

// openHandler serves a route that needs no credentials.
type openHandler func(w http.ResponseWriter, r *http.Request) error

// route is one entry of the API surface. The OpenAPI document and the
// authorization matrix test are generated from this table.
type route struct {
	method  string
	pattern string
	access  access
	summary string
	in      any   // request body type, for the OpenAPI document
	out     any   // response body type
	status  int   // success status; 0 = 200
	body    int64 // body limit override; 0 = Config.MaxBodyBytes
	ws      bool  // a WebSocket: tokens may also come as a subprotocol
	mcp     bool  // /mcp: also accepts the MCP audience; 401 challenges point at its metadata
	browser bool  // a page: without credentials, send the browser to sign in
	agent   bool  // runs the model or tools as the caller: a personal access token needs the agent scope
	noToken bool  // never for a personal access token (managing tokens, forward-auth)
	serve   handler
	open    openHandler

	rate rateClass // the rate limit it counts against; unset: read for GET, write otherwise (limits.go)
}

// tokenScope is the personal access token scope rt needs (idflow.Scope…),
// or "" when no personal access token may call it: admin, internal and
// open routes, pages, and the routes marked noToken. Otherwise /mcp needs
// mcp, agent turns and runs agent, reads read, and every other method
// write.
func (rt route) tokenScope() string {
	switch {
	case rt.access != accessUser && rt.access != accessAny, rt.noToken, rt.browser:
		return ""
	case rt.mcp:
		return idflow.ScopeMCP
	case rt.agent:
		return idflow.ScopeAgent
	case rt.method == http.MethodGet || rt.method == http.MethodHead:
		return idflow.ScopeRead
	}
	return idflow.ScopeWrite
}

// routes is the whole API surface of idflow. Each handler is built with
// only the dependencies it uses.
func (s *Server) routes(d Deps) []route {
	svc := d.Svc
	type (
		apps      = idflow.List[idflow.App]
		sessions  = idflow.List[idflow.ChatSession]
		messages  = idflow.List[idflow.Message]
		agents    = idflow.List[idflow.Agent]
		workflows = idflow.List[idflow.Workflow]
		documents = idflow.List[idflow.Document]
		facts     = idflow.List[idflow.Fact]
		audits    = idflow.List[idflow.AuditEvent]
		users     = idflow.List[idflow.User]
		runs      = idflow.List[idflow.Run]
		lookups   = idflow.List[lookupItem]
	)
	rs := []route{
		{method: "GET", pattern: "/healthz", access: accessOpen, rate: ratelimit.None, summary: "Liveness", open: handleHealthz},
		{method: "GET", pattern: "/readyz", access: accessOpen, rate: ratelimit.None, summary: "Readiness: the store answers; `verify` says whether `idflow verify` may run", open: handleReadyz(d.Ready, s.cfg.AllowVerify, s.log)},
		{method: "GET", pattern: "/.well-known/idflow/jwks.json", access: accessOpen, rate: ratelimit.None, summary: "Keys that sign X-Idflow-Assertion", open: handleAssertionJWKS(d.Signer)},
		{method: "GET", pattern: "/openapi.json", access: accessAny, summary: "This API as OpenAPI 3.1", serve: s.handleOpenAPI},

		{method: "GET", pattern: "/auth/login", access: accessOpen, summary: "Browser sign-in: redirects to the identity provider (code + PKCE)", open: handleLogin(d.Login)},
		{method: "GET", pattern: "/auth/callback", access: accessOpen, summary: "Browser sign-in: the identity provider's redirect", open: handleCallback(d.Login, s.audit)},
		{method: "POST", pattern: "/auth/logout", access: accessOpen, summary: "Sign out (needs the session's CSRF token; acts only on the caller's own session)", open: handleLogout(d.Login, s.audit)},
		{method: "GET", pattern: "/{$}", access: accessUser, browser: true, summary: "The web UI", serve: handleUI},
		{method: "GET", pattern: "/static/{file}", access: accessUser, browser: true, summary: "The web UI's scripts and styles", serve: handleUI},

		{method: "GET", pattern: "/api/v1/me", access: accessAny, summary: "The caller's Principal", out: me{}, serve: handleMe(d.Login)},
		{method: "GET", pattern: "/auth/validate", access: accessUser, noToken: true, summary: "Forward-auth for nginx auth_request, Caddy forward_auth, Traefik ForwardAuth", serve: handleValidate(d.Authn, d.Signer, s.cfg.PublicURL)},

		{method: "GET", pattern: "/api/v1/apps", access: accessUser, summary: "List your apps", out: apps{}, serve: listed(svc.ListApps)},
		{method: "POST", pattern: "/api/v1/apps", access: accessUser, summary: "Create an app", in: appIn{}, out: idflow.App{}, status: 201, serve: handleCreateApp(svc)},
		{method: "GET", pattern: "/api/v1/apps/{app_id}", access: accessUser, summary: "Get an app", out: idflow.App{}, serve: byID("app_id", svc.GetApp)},
		{method: "PATCH", pattern: "/api/v1/apps/{app_id}", access: accessUser, summary: "Update an app", in: idflow.AppPatch{}, out: idflow.App{}, serve: updateByID("app_id", svc.UpdateApp)},
		{method: "DELETE", pattern: "/api/v1/apps/{app_id}", access: accessUser, summary: "Delete an app", status: 204, serve: deleteByID("app_id", svc.DeleteApp)},

		{method: "GET", pattern: "/api/v1/sessions", access: accessUser, summary: "List your chat sessions (?app_id= filters)", out: sessions{}, serve: handleListSessions(svc)},
		{method: "POST", pattern: "/api/v1/sessions", access: accessUser, summary: "Create a chat session", in: sessionIn{}, out: idflow.ChatSession{}, status: 201, serve: handleCreateSession(svc)},
		{method: "GET", pattern: "/api/v1/sessions/{session_id}", access: accessUser, summary: "Get a chat session", out: idflow.ChatSession{}, serve: byID("session_id", svc.GetSession)},
		{method: "PATCH", pattern: "/api/v1/sessions/{session_id}", access: accessUser, summary: "Update a chat session", in: idflow.SessionPatch{}, out: idflow.ChatSession{}, serve: updateByID("session_id", svc.UpdateSession)},
		{method: "DELETE", pattern: "/api/v1/sessions/{session_id}", access: accessUser, summary: "Delete a chat session and its messages", status: 204, serve: deleteByID("session_id", svc.DeleteSession)},
		{method: "GET", pattern: "/api/v1/sessions/{session_id}/messages", access: accessUser, summary: "A session's history, oldest first", out: messages{}, serve: handleListMessages(svc)},
		{method: "POST", pattern: "/api/v1/sessions/{session_id}/messages", access: accessUser, rate: ratelimit.Turn, summary: "Send a message: an agent turn as the caller (memory, tools, the reply); 201 {message, reply, steps, memory}, or with Accept: text/event-stream the turn's events as SSE (docs/AGENTS.md)", in: messageIn{}, out: messageOut{}, status: 201, agent: true, serve: handleSendMessage(svc, s.log)},

		{method: "GET", pattern: "/api/v1/agents", access: accessUser, summary: "List your agents", out: agents{}, serve: listed(svc.ListAgents)},
		{method: "POST", pattern: "/api/v1/agents", access: accessUser, summary: "Create an agent", in: agentIn{}, out: idflow.Agent{}, status: 201, serve: handleCreateAgent(svc)},
		{method: "GET", pattern: "/api/v1/agents/{agent_id}", access: accessUser, summary: "Get an agent", out: idflow.Agent{}, serve: byID("agent_id", svc.GetAgent)},
		{method: "PATCH", pattern: "/api/v1/agents/{agent_id}", access: accessUser, summary: "Update an agent", in: idflow.AgentPatch{}, out: idflow.Agent{}, serve: updateByID("agent_id", svc.UpdateAgent)},
		{method: "DELETE", pattern: "/api/v1/agents/{agent_id}", access: accessUser, summary: "Delete an agent", status: 204, serve: deleteByID("agent_id", svc.DeleteAgent)},

		{method: "GET", pattern: "/api/v1/workflows", access: accessUser, summary: "List your workflows", out: workflows{}, serve: listed(svc.ListWorkflows)},
		{method: "POST", pattern: "/api/v1/workflows", access: accessUser, summary: "Create a workflow draft", in: workflowIn{}, out: idflow.Workflow{}, status: 201, serve: handleCreateWorkflow(svc)},
		{method: "GET", pattern: "/api/v1/workflows/{workflow_id}", access: accessUser, summary: "Get a workflow", out: idflow.Workflow{}, serve: byID("workflow_id", svc.GetWorkflow)},
		{method: "PUT", pattern: "/api/v1/workflows/{workflow_id}", access: accessUser, summary: "Replace a workflow draft", in: workflowIn{}, out: idflow.Workflow{}, serve: handleReplaceWorkflow(svc)},
		{method: "DELETE", pattern: "/api/v1/workflows/{workflow_id}", access: accessUser, summary: "Delete a workflow", status: 204, serve: deleteByID("workflow_id", svc.DeleteWorkflow)},
		{method: "POST", pattern: "/api/v1/workflows/{workflow_id}/publish", access: accessUser, summary: "Freeze the draft as a new version", out: idflow.Workflow{}, serve: byID("workflow_id", svc.PublishWorkflow)},

		{method: "POST", pattern: "/api/v1/workflows/{workflow_id}/runs", access: accessUser, summary: "Start a run (202 with the run); version 0 or absent runs the draft", in: runIn{}, out: idflow.Run{}, status: 202, agent: true, serve: handleStartRun(d.Runs)},
		{method: "GET", pattern: "/api/v1/runs", access: accessUser, summary: "List your runs", out: runs{}, serve: listed(svc.ListRuns)},
		{method: "GET", pattern: "/api/v1/runs/{run_id}", access: accessUser, summary: "Get a run", out: idflow.Run{}, serve: byID("run_id", svc.GetRun)},
		{method: "GET", pattern: "/api/v1/runs/{run_id}/events", access: accessUser, summary: "A run's events (?after_seq=)", out: eventsOut{}, serve: handleRunEvents(svc)},
		{method: "POST", pattern: "/api/v1/runs/{run_id}/cancel", access: accessUser, summary: "Cancel a run", out: idflow.Run{}, serve: handleCancelRun(d.Runs)},
		{method: "GET", pattern: "/ws/execution/{run_id}", access: accessUser, rate: ratelimit.WS, ws: true, summary: "WebSocket: the run's events, history then live (subprotocols idflow.v1 + bearer.<JWT>)", serve: s.handleRunSocket(svc, d.Bus)},

		{method: "POST", pattern: "/api/v1/etl/ingest", access: accessUser, rate: ratelimit.Ingest, summary: "Ingest a document (JSON or multipart `file`); its chunks become facts", in: ingestIn{}, out: idflow.Document{}, status: 201, body: s.cfg.MaxUploadBytes, serve: handleIngest(svc)},
		{method: "GET", pattern: "/api/v1/documents", access: accessUser, summary: "List your documents", out: documents{}, serve: listed(svc.ListDocuments)},
		{method: "GET", pattern: "/api/v1/documents/{document_id}", access: accessUser, summary: "Get a document", out: idflow.Document{}, serve: byID("document_id", svc.GetDocument)},
		{method: "DELETE", pattern: "/api/v1/documents/{document_id}", access: accessUser, summary: "Delete a document and its facts", status: 204, serve: deleteByID("document_id", svc.DeleteDocument)},
		{method: "GET", pattern: "/api/v1/documents/{document_id}/content", access: accessUser, summary: "The document's original bytes", serve: handleDocumentContent(svc)},

		{method: "GET", pattern: "/api/v1/facts", access: accessUser, summary: "List your facts", out: facts{}, serve: listed(svc.ListFacts)},
		{method: "POST", pattern: "/api/v1/facts", access: accessUser, summary: "Remember a fact", in: factIn{}, out: idflow.Fact{}, status: 201, serve: handleCreateFact(svc)},
		{method: "GET", pattern: "/api/v1/facts/{fact_id}", access: accessUser, summary: "Get a fact", out: idflow.Fact{}, serve: byID("fact_id", svc.GetFact)},
		{method: "DELETE", pattern: "/api/v1/facts/{fact_id}", access: accessUser, summary: "Forget a fact", status: 204, serve: deleteByID("fact_id", svc.DeleteFact)},
		{method: "POST", pattern: "/api/v1/memory/search", access: accessUser, summary: "Search your facts", in: searchIn{}, out: searchOut{}, serve: handleSearchMemory(svc)},
		{method: "GET", pattern: "/api/v1/users/{user_id}/facts", access: accessUser, summary: "Seed-compatible: `me` or your own id; an admin may read a user of their own tenant, a platform admin any user (audited)", out: facts{}, serve: handleUserFacts(svc)},

		{method: "GET", pattern: "/api/v1/tools", access: accessUser, summary: "The tools you may use, built in and downstream (`server` names a downstream tool's MCP server); not paged (docs/AGENTS.md)", out: toolsOut{}, serve: handleListTools(svc)},
		{method: "GET", pattern: "/api/v1/llms", access: accessUser, summary: "Models you may name", out: lookups{}, serve: handleLLMs(svc)},
		{method: "GET", pattern: "/api/v1/personas", access: accessUser, summary: "Personas", out: lookups{}, serve: handlePersonas},
		{method: "GET", pattern: "/api/v1/tags", access: accessUser, summary: "Tags", out: lookups{}, serve: handleTags},

		{method: "GET", pattern: "/api/v1/audit", access: accessUser, summary: "Your own audit events", out: audits{}, serve: listed(svc.ListAudit)},
		{method: "GET", pattern: "/api/v1/usage", access: accessUser, summary: "Your own model token usage by day (UTC) and model (?from=&to= days, YYYY-MM-DD; default the last 30 days; at most 366)", out: usageOut{}, serve: handleUsage(d.Store, budgetsOf(svc))},
		{method: "GET", pattern: "/api/v1/admin/usage", access: accessAdmin, summary: "Model token usage of your tenant by day and model (?user_id= one user's; ?from=&to= as /api/v1/usage; every tenant: platform admin role)", out: usageOut{}, serve: handleAdminUsage(svc)},
		{method: "GET", pattern: "/api/v1/admin/budgets", access: accessAdmin, summary: "Model token budgets and spend of your tenant now (?user_id= also one user's; every tenant: platform admin role, with ?tenant_id=; docs/LIMITS.md)", out: budget.Status{}, serve: handleAdminBudget(svc)},
		{method: "POST", pattern: "/api/v1/admin/budgets/reset", access: accessAdmin, summary: "Reset the spend of your tenant, or of one of its users (?user_id=), for ?period= day, month, or both when absent (audited; platform admin: ?tenant_id=)", out: budget.Status{}, serve: handleResetBudget(svc)},
		{method: "GET", pattern: "/api/v1/admin/users", access: accessAdmin, summary: "The users seen in your tenant (admin role; every tenant: platform admin role)", out: users{}, serve: listed(svc.AdminListUsers)},
		{method: "GET", pattern: "/api/v1/admin/audit/verify", access: accessAdmin, summary: "Check the audit hash chain: every link, and the hashes of your tenant's events (every event: platform admin role)", out: auditVerifyOut{}, serve: handleAuditVerify(svc)},
		{method: "POST", pattern: "/api/v1/admin/users/{user_id}/disable", access: accessAdmin, summary: "Disable a user of your tenant: every credential refused, sessions and sockets closed, runs cancelled, connections revoked, on every replica within 5 s (docs/SCIM.md)", out: userStateOut{}, serve: handleSetUserDisabled(svc, true)},
		{method: "POST", pattern: "/api/v1/admin/users/{user_id}/enable", access: accessAdmin, summary: "Re-enable a disabled user of your tenant", out: userStateOut{}, serve: handleSetUserDisabled(svc, false)},
		{method: "GET", pattern: "/api/v1/admin/audit", access: accessAdmin, summary: "The audit trail of your tenant (admin role; every tenant: platform admin role)", out: audits{}, serve: listed(svc.AdminListAudit)},
		{method: "GET", pattern: "/.well-known/oauth-protected-resource", access: accessOpen, summary: "RFC 9728 metadata of the MCP resource", open: handleMCPMetadata(d.MCP)},
		{method: "GET", pattern: "/.well-known/oauth-protected-resource/mcp", access: accessOpen, summary: "RFC 9728 metadata of the MCP resource (path-suffixed form)", open: handleMCPMetadata(d.MCP)},
		{method: "POST", pattern: "/mcp", access: accessUser, rate: ratelimit.MCP, mcp: true, body: s.cfg.MaxUploadBytes, summary: "MCP Streamable HTTP: JSON-RPC messages; tools act as the token's user (aud: the API or <public url>/mcp)", serve: handleMCP(d.MCP)},
		{method: "GET", pattern: "/mcp", access: accessUser, mcp: true, summary: "MCP Streamable HTTP: the session's server-to-client SSE stream", serve: handleMCP(d.MCP)},
		{method: "DELETE", pattern: "/mcp", access: accessUser, mcp: true, summary: "MCP Streamable HTTP: end the session", serve: handleMCP(d.MCP)},

		{method: "GET", pattern: "/internal/v1/stats", access: accessInternal, summary: "Aggregate counts (app-only, allowlisted clients)", out: idflow.Stats{}, serve: handleStats(svc)},
		{method: "GET", pattern: "/metrics", access: accessInternal, rate: ratelimit.None, summary: "Prometheus metrics, never a user id (app-only, allowlisted clients; docs/METRICS.md)", serve: handleMetrics(d.Metrics)},
	}
	rs = append(rs, oauthRoutes(d.AuthServer, d.Login)...) // handlers_oauth.go; only with IDFLOW_MCP_AUTH=idflow

	rs = append(rs, lifecycleRoutes(svc, s.log)...)       // handlers_tokens.go: personal access tokens, export, erasure
	rs = append(rs, scimRoutes(s, svc)...)                // handlers_scim.go
	return append(rs, connectionRoutes(d.Connections)...) // handlers_connections.go; only when providers are configured
}

// mux registers every route, grouped by path so that a wrong method answers
// 405 as problem+json, and an unknown path 404.
func (s *Server) mux() http.Handler {
	mux := http.NewServeMux()
	byPath := map[string]map[string]http.Handler{}
	var order []string
	for _, rt := range s.api {
		if byPath[rt.pattern] == nil {
			byPath[rt.pattern] = map[string]http.Handler{}
			order = append(order, rt.pattern)
		}
		byPath[rt.pattern][rt.method] = s.wrap(rt)
	}
	for _, pattern := range order {
		methods := byPath[pattern]
		mux.Handle(pattern, s.measure(pattern, methodDispatch(methods)))
	}
	if s.devIdP != nil {
		mux.Handle("/dev/idp/", s.measure("/dev/idp/", s.devIdP))
		mux.Handle("/dev/downstream/", s.measure("/dev/downstream/", s.devIdP)) // the dev issuer's demo downstream API
	}
	mux.Handle("/", s.measure(RouteUnmatched, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, idflow.ENOTFOUND, "no such route")
	})))
	return mux
}

func methodDispatch(methods map[string]http.Handler) http.Handler {
	allow := ""
	for m := range methods {
		if allow != "" {
			allow += ", "
		}
		allow += m
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, ok := methods[r.Method]
		if !ok && r.Method == http.MethodHead {
			h, ok = methods[http.MethodGet]
		}
		if !ok {
			w.Header().Set("Allow", allow)
			writeProblem(w, http.StatusMethodNotAllowed, idflow.EINVALID, "method not allowed")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// wrap authenticates and authorizes a route before its handler runs.
func (s *Server) wrap(rt route) http.Handler {
	limit := rt.body
	if limit == 0 {
		limit = s.cfg.MaxBodyBytes
	}
	bodyTimeout := s.bodyTimeout(rt, limit) // middleware.go
	class := classOf(rt)                    // limits.go
	tokenScope := rt.tokenScope()
	if rt.access == accessOpen {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !s.admitRate(w, r, class, peerKey(r)) {
				return
			}
			setBodyDeadline(r, bodyTimeout)
			r.Body = http.MaxBytesReader(w, r.Body, limit)
			if err := rt.open(w, r); err != nil {
				s.writeError(w, r, err)
			}
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setBodyDeadline(r, bodyTimeout)
		if rt.mcp {
			if err := s.checkMCPOrigin(r); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		p, err := s.authenticate(r, rt.access, tokenScope, rt.ws, rt.mcp)
		s.noteAuth(w, r, p, err) // request metrics: auth method and refusal reason
		if err != nil && rt.mcp && s.mcp != nil && idflow.ErrorCode(err) == idflow.EUNAUTHORIZED {
			w.Header().Set("WWW-Authenticate", s.mcp.Challenge(r, err))
		}
		if err != nil && rt.browser && idflow.ErrorCode(err) == idflow.EUNAUTHORIZED && s.login != nil {
			http.Redirect(w, r, "/auth/login?return_to="+url.QueryEscape(r.URL.RequestURI()), http.StatusFound)
			return
		}
		if err != nil {
			// A caller refused credentials counts against its peer's
			// bucket, so that guessing tokens is bounded too.
			if s.admitRate(w, r, class, peerKey(r)) {
				s.writeError(w, r, err)
			}
			return
		}
		key := callerKey(p)
		if !s.admitRate(w, r, class, key) {
			return
		}
		release, ok := s.admitConcurrent(w, r, rt, key)
		if !ok {
			return
		}
		defer release()
		ctx := idflow.NewContext(r.Context(), p)
		if raw, ok := bearerOf(r); ok && p.AuthMethod == idflow.AuthBearer {
			ctx = idflow.WithInboundToken(ctx, p, raw) // for token exchange only; never logged or stored
		}
		setLogUser(ctx, p.UserID)
		r = r.WithContext(ctx)
		// Bounded here, not before: until now the body is the middleware's
		// guardedBody, which a request waiting its turn releases.
		if r.Body != http.NoBody { // nothing to bound, and one allocation less per GET
			r.Body = http.MaxBytesReader(w, r.Body, limit)
		}
		if err := rt.serve(w, r, p); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// authenticate returns the verified Principal of r if it may use a route of
// the given access level.
func (s *Server) authenticate(r *http.Request, a access, scope string, websocket, mcp bool) (p idflow.Principal, err error) {
	switch {
	case websocket:
		p, err = s.authenticateWS(r)
	case mcp:
		p, err = s.authn.Authenticate(r, s.mcpAudiences())
	default:
		p, err = s.authn.Authenticate(r, s.cfg.APIAudiences)
	}
	if err != nil {
		s.auditAuthFailure(r, err)
		return p, err
	}
	if err = s.authorize(p, a); err == nil {
		err = authorizeToken(p, scope)
	}
	if err != nil {
		s.audit.denial(r, &p, "authorize", idflow.ErrorMessage(err))
		return p, err
	}
	s.touchUser(r.Context(), p)
	return p, nil
}

// auditAuthFailure audits refused credentials. A request that simply came
// without any is only logged, so anonymous noise cannot flood the audit chain.
func (s *Server) auditAuthFailure(r *http.Request, err error) {
	switch {
	case errors.Is(err, auth.ErrSpoofedHeader):
		s.audit.anonymous(r, "authenticate", "spoofed", "spoofed identity header")
	case errors.Is(err, auth.ErrCSRF):
		s.audit.anonymous(r, "authenticate", "csrf", "csrf token missing or wrong")
	case errors.Is(err, auth.ErrCrossSite):
		s.audit.anonymous(r, "authenticate", "cross_site", "cross-site request with an ambient credential")
	case errors.Is(err, auth.ErrUserDisabled):
		s.audit.anonymous(r, "authenticate", "disabled", "a disabled user's credential")
	case r.Header.Get("Authorization") != "" || idflow.ErrorCode(err) != idflow.EUNAUTHORIZED:
		s.audit.anonymous(r, "authenticate", idflow.ErrorCode(err), err.Error())
	default:
		s.log.DebugContext(r.Context(), "no credentials", "path", r.URL.Path)
	}
}

// authorize checks a verified Principal against an access level.
func (s *Server) authorize(p idflow.Principal, a access) error {
	switch a {
	case accessAny:
		return nil
	case accessUser:
		if p.Kind != idflow.KindUser {
			return idflow.Errorf(idflow.EFORBIDDEN, "app-only tokens cannot act as a user")
		}
		return nil
	case accessAdmin:
		if p.Kind != idflow.KindUser {
			return idflow.Errorf(idflow.EFORBIDDEN, "app-only tokens cannot act as a user")
		}
		// The service owns the admin rule (which role reaches which
		// tenants); without a service nobody is an admin.
		if s.isAdmin == nil || !s.isAdmin(p) {
			return idflow.Errorf(idflow.EFORBIDDEN, "an admin role is required")
		}
		return nil
	case accessInternal:
		if p.Kind != idflow.KindApp {
			return idflow.Errorf(idflow.EFORBIDDEN, "only app-only tokens may call internal routes")
		}
		if !containsString(s.cfg.InternalClients, p.ClientID) {
			return idflow.Errorf(idflow.EFORBIDDEN, "this client is not allowed on internal routes")
		}
		if s.cfg.InternalRole != "" && !p.HasRole(s.cfg.InternalRole) {
			return idflow.Errorf(idflow.EFORBIDDEN, "the %s app role is required", s.cfg.InternalRole)
		}
		return nil
	case accessSCIM:
		// The service checks it again when it builds the directory scope.
		if p.Kind != idflow.KindApp {
			return idflow.Errorf(idflow.EFORBIDDEN, "SCIM is for app-only tokens of a provisioning client")
		}
		if !containsString(s.cfg.SCIMClients, p.ClientID) {
			return idflow.Errorf(idflow.EFORBIDDEN, "this client is not allowed to provision users (IDFLOW_SCIM_CLIENTS)")
		}
		return nil
	}
	return idflow.Errorf(idflow.EFORBIDDEN, "route has no access level")
}

// authorizeToken lets a personal access token through only to a route
// that takes one, and only with the scope the route needs.
func authorizeToken(p idflow.Principal, scope string) error {
	switch {
	case p.AuthMethod != idflow.AuthPersonalToken:
		return nil
	case scope == "":
		return idflow.Errorf(idflow.EFORBIDDEN, "personal access tokens cannot use this route")
	case !p.HasScope(scope):
		return idflow.WrapError(idflow.EFORBIDDEN, "this personal access token lacks the \""+scope+"\" scope", auth.ErrInsufficientScope)
	}
	return nil
}

func containsString(ss []string, s string) bool {
	if s == "" {
		return false
	}
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
