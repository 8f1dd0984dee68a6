// Package httpapi is idflow's HTTP surface. routes.go lists every route;
// each is authenticated (package auth), authorized by its access level, then
// served by a handler that receives the Principal and returns an error,
// mapped to HTTP once (problem.go).
package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/ratelimit"
	"github.com/idflow/idflow/service"
	"github.com/idflow/idflow/web"
)

// Config is the HTTP layer's configuration.
type Config struct {
	PublicURL            string
	APIAudiences         []string // audiences accepted on API routes
	MCPAudience          string   // additionally accepted on /mcp
	InternalClients      []string
	InternalRole         string
	SCIMClients          []string // app-only client ids that provision users over /scim/v2
	CORSOrigins          []string
	MaxBodyBytes         int64 // JSON bodies (default 1 MiB)
	MaxUploadBytes       int64 // document uploads (default 10 MiB)
	InsecureWSQueryToken bool  // allow ?access_token= on WebSockets
	WSMaxPerUser         int   // open WebSockets per user (default 50)

	// BodyTimeout is how long a request body of MaxBodyBytes may take to
	// arrive (default 30 s); a route with a larger limit gets
	// proportionally longer. WebSockets and streams are not bound by it
	// once upgraded or answered.
	BodyTimeout time.Duration
	// MaxBodiesPerPeer is how many request bodies one peer address may be
	// sending at once (default 8); beyond it, 429.
	MaxBodiesPerPeer int
	// TurnsPerUser bounds the agent turns one user may have in progress
	// (default 4), StreamsPerUser the event streams (SSE turns; default 8),
	// and IngestBytesPerUser the bytes of the ingests in progress (default
	// 32 MiB; one ingest is always let through alone). Beyond each, 429.
	TurnsPerUser       int
	StreamsPerUser     int
	IngestBytesPerUser int64
	// AuditDenialsPerMinute bounds the audit rows of unauthenticated
	// denials per (peer address, reason) and minute (default 10).
	AuditDenialsPerMinute int
	// AllowVerify makes /readyz say that `idflow verify` may run against
	// this server (IDFLOW_ALLOW_VERIFY).
	AllowVerify bool
}

// Store is what the HTTP layer reads and writes itself, past the service:
// the audit rows of denials and browser sign-ins, the users seen, and the
// caller's own usage.
type Store interface {
	RecordAudit(ctx context.Context, e idflow.AuditEvent) (idflow.AuditEvent, error)
	TouchUser(ctx context.Context, p idflow.Principal) error
	ListUsage(ctx context.Context, p idflow.Principal, from, to time.Time) ([]idflow.UsageDay, error)
}

type userToucher interface {
	TouchUser(ctx context.Context, p idflow.Principal) error
}

// Deps are what the server and its handlers use. Each handler is built
// with only the ones it needs (routes.go).
type Deps struct {
	Log    *slog.Logger
	Authn  *auth.Authenticator
	Store  Store
	Svc    *service.Service
	Runs   Runs
	Login  *web.Login // browser sign-in; nil when not configured
	Bus    idflow.EventBus
	Signer *auth.Signer // X-Idflow-Assertion
	DevIdP http.Handler // mounted under /dev/idp (and /dev/downstream) in dev mode only
	MCP    MCP          // /mcp and its metadata; nil answers 404
	Ready  func(ctx context.Context) error
	Now    func() time.Time // the clock of the denial limiter; nil = time.Now

	// AuthServer is idflow's authorization server for /mcp; nil when
	// IDFLOW_MCP_AUTH is upstream (its routes then do not exist).
	AuthServer AuthServer

	// Connections serves /api/v1/connections; nil when no downstream
	// provider is configured (the routes then do not exist).
	Connections Connections

	// Metrics serves GET /metrics (the Prometheus exposition) to
	// allowlisted app-only callers; nil: the route answers 404.
	Metrics http.Handler
	// Observer receives a sample of every request; nil: none are taken.
	Observer Observer
	// Limiter holds the per-caller request rate limits; nil: none.
	Limiter *ratelimit.Limiter
	// OnLimit hears of every request a limit refused; nil: nobody.
	OnLimit LimitObserver
}

// Server serves the API: it authenticates and authorizes every request,
// then hands it to the route's handler. It holds what that takes, and the
// state shared by all requests; the handlers hold their own dependencies.
type Server struct {
	cfg     Config
	log     *slog.Logger
	authn   *auth.Authenticator
	isAdmin func(idflow.Principal) bool // the service's admin rule; nil: nobody is an admin
	users   userToucher                 // nil: users seen are not recorded
	audit   *auditor
	login   *web.Login   // a signed-out browser is sent to sign in
	mcp     MCP          // the WWW-Authenticate challenge of /mcp
	devIdP  http.Handler // /dev/idp and /dev/downstream
	obs     Observer     // request samples; nil: none
	api     []route      // routes.go
	handler http.Handler

	openAPIOnce sync.Once
	openAPIDoc  []byte

	wsMu   sync.Mutex
	wsOpen map[string]int                // open WebSockets per user
	wsLive map[idflow.UserRef]socketEnds // their ends, for CloseUser
	events *eventEncodings               // events encoded once for every socket streaming them

	touchMu sync.Mutex
	touched map[string]time.Time

	bodies peerBodies // request bodies in flight per peer

	limiter                     *ratelimit.Limiter // nil: no rate limits
	onLimit                     LimitObserver
	turns, streams, ingestBytes *perUser // in flight per user (limits.go)
}

// New builds the server and its routes.
func New(cfg Config, d Deps) *Server {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.MaxUploadBytes <= 0 {
		cfg.MaxUploadBytes = 10 << 20
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = 30 * time.Second
	}
	if cfg.MaxBodiesPerPeer <= 0 {
		cfg.MaxBodiesPerPeer = 8
	}
	if cfg.TurnsPerUser <= 0 {
		cfg.TurnsPerUser = 4
	}
	if cfg.StreamsPerUser <= 0 {
		cfg.StreamsPerUser = 8
	}
	if cfg.IngestBytesPerUser <= 0 {
		cfg.IngestBytesPerUser = 32 << 20
	}
	if cfg.AuditDenialsPerMinute <= 0 {
		cfg.AuditDenialsPerMinute = 10
	}
	log := d.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := d.Now
	if now == nil {
		now = time.Now
	}
	s := &Server{cfg: cfg, log: log, authn: d.Authn, login: d.Login, mcp: d.MCP, devIdP: d.DevIdP, obs: d.Observer,
		touched: map[string]time.Time{}, wsOpen: map[string]int{}, wsLive: map[idflow.UserRef]socketEnds{}, events: newEventEncodings()}
	s.audit = &auditor{log: log,
		denials: &denialLimiter{now: now, perWindow: cfg.AuditDenialsPerMinute, log: log, keys: map[denialKey]*denialCount{}}}
	if d.Store != nil { // a nil Store must not become a non-nil interface
		s.audit.store, s.users = d.Store, d.Store
	}
	if d.Svc != nil {
		s.isAdmin = d.Svc.IsAdmin
	}
	s.bodies = peerBodies{limit: cfg.MaxBodiesPerPeer, n: map[string]int{}}
	s.limiter, s.onLimit = d.Limiter, d.OnLimit
	s.turns, s.streams = newPerUser(int64(cfg.TurnsPerUser)), newPerUser(int64(cfg.StreamsPerUser))
	s.ingestBytes = newPerUser(cfg.IngestBytesPerUser)
	s.api = s.routes(d)
	s.handler = s.middleware(s.mux())
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// touchUser records a user as seen, at most every few minutes per process.
func (s *Server) touchUser(ctx context.Context, p idflow.Principal) {
	if s.users == nil || p.Kind != idflow.KindUser {
		return
	}
	now := time.Now()
	s.touchMu.Lock()
	last, ok := s.touched[p.UserID]
	if ok && now.Sub(last) < 5*time.Minute {
		s.touchMu.Unlock()
		return
	}
	if len(s.touched) > 100000 {
		clear(s.touched)
	}
	s.touched[p.UserID] = now
	s.touchMu.Unlock()
	if err := s.users.TouchUser(ctx, p); err != nil {
		s.log.WarnContext(ctx, "touch user", "err", err)
	}
}
