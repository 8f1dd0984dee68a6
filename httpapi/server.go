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
	"github.com/idflow/idflow/service"
	"github.com/idflow/idflow/web"
)

// Config is the HTTP layer's configuration.
type Config struct {
	PublicURL       string
	APIAudiences    []string // audiences accepted on API routes
	MCPAudience     string   // additionally accepted on /mcp
	InternalClients []string
	InternalRole    string
	CORSOrigins     []string
	MaxBodyBytes    int64 // JSON bodies (default 1 MiB)
	MaxUploadBytes  int64 // document uploads (default 10 MiB)
	WSQueryToken    bool  // allow ?access_token= on WebSockets
	WSMaxPerUser    int   // open WebSockets per user (default 50)
	Dev             bool

	// BodyTimeout is how long a request body of MaxBodyBytes may take to
	// arrive (default 30 s); a route with a larger limit gets
	// proportionally longer. WebSockets and streams are not bound by it
	// once upgraded or answered.
	BodyTimeout time.Duration
	// MaxBodiesPerPeer is how many request bodies one peer address may be
	// sending at once (default 8); beyond it, 429.
	MaxBodiesPerPeer int
	// AuditDenialsPerMinute bounds the audit rows of unauthenticated
	// denials per (peer address, reason) and minute (default 10).
	AuditDenialsPerMinute int
	// AllowVerify makes /readyz say that `idflow verify` may run against
	// this server (IDFLOW_ALLOW_VERIFY).
	AllowVerify bool
}

// Deps are the services the handlers use.
type Deps struct {
	Log    *slog.Logger
	Authn  *auth.Authenticator
	Store  idflow.Store
	Svc    *service.Service
	Runs   Runs
	Login  *web.Login // browser sign-in; nil when not configured
	Bus    idflow.EventBus
	Signer *auth.Signer // X-Idflow-Assertion
	DevIdP http.Handler // mounted under /dev/idp (and /dev/downstream) in dev mode only
	MCP    MCP          // /mcp and its metadata; nil answers 404
	Ready  func(ctx context.Context) error
	Now    func() time.Time // the clock of the denial limiter; nil = time.Now

	// Connections serves /api/v1/connections; nil when no downstream
	// provider is configured (the routes then do not exist).
	Connections Connections

	// Metrics serves GET /metrics (the Prometheus exposition) to
	// allowlisted app-only callers; nil: the route answers 404.
	Metrics http.Handler
	// Observer receives a sample of every request; nil: none are taken.
	Observer Observer
}

// Server serves the API.
type Server struct {
	cfg     Config
	log     *slog.Logger
	authn   *auth.Authenticator
	store   idflow.Store
	svc     *service.Service
	runs    Runs
	login   *web.Login
	bus     idflow.EventBus
	signer  *auth.Signer
	devIdP  http.Handler
	conns   Connections
	mcp     MCP
	ready   func(ctx context.Context) error
	handler http.Handler

	metrics http.Handler // GET /metrics
	obs     Observer     // request samples; nil: none

	openAPIOnce sync.Once
	openAPIDoc  []byte

	wsMu   sync.Mutex
	wsOpen map[string]int // open WebSockets per user

	touchMu sync.Mutex
	touched map[string]time.Time

	denials *denialLimiter // unauthenticated denials audited per peer and reason
	bodies  peerBodies     // request bodies in flight per peer
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
	if cfg.AuditDenialsPerMinute <= 0 {
		cfg.AuditDenialsPerMinute = 10
	}
	s := &Server{cfg: cfg, log: d.Log, authn: d.Authn, store: d.Store, svc: d.Svc, runs: d.Runs, login: d.Login, bus: d.Bus, signer: d.Signer,
		devIdP: d.DevIdP, conns: d.Connections, mcp: d.MCP, ready: d.Ready, touched: map[string]time.Time{}, wsOpen: map[string]int{}}
	s.metrics, s.obs = d.Metrics, d.Observer
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	now := d.Now
	if now == nil {
		now = time.Now
	}
	s.denials = &denialLimiter{now: now, perWindow: cfg.AuditDenialsPerMinute, log: s.log, keys: map[denialKey]*denialCount{}}
	s.bodies = peerBodies{limit: cfg.MaxBodiesPerPeer, n: map[string]int{}}
	s.handler = s.middleware(s.mux())
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// touchUser records a user as seen, at most every few minutes per process.
func (s *Server) touchUser(ctx context.Context, p idflow.Principal) {
	if s.store == nil || p.Kind != idflow.KindUser {
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
	if err := s.store.TouchUser(ctx, p); err != nil {
		s.log.WarnContext(ctx, "touch user", "err", err)
	}
}
