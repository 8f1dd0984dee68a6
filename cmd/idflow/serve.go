package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/authz"
	"github.com/idflow/idflow/cache"
	"github.com/idflow/idflow/devidp"
	"github.com/idflow/idflow/files"
	"github.com/idflow/idflow/httpapi"
	"github.com/idflow/idflow/internal/logbuf"
	"github.com/idflow/idflow/llm"
	"github.com/idflow/idflow/metrics"
	"github.com/idflow/idflow/runner"
	"github.com/idflow/idflow/service"
)

func cmdServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, _, err := loadConfig("serve", args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	// Log lines are written out in batches (internal/logbuf): every 100 ms,
	// at once from warnings up, after start-up, and at shutdown.
	logw := logbuf.New(stderr, 64<<10, 100*time.Millisecond)
	defer logw.Close()
	log := slog.New(logbuf.Handler(newLogger(cfg, logw).Handler(), logw, slog.LevelWarn))
	app, err := build(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer app.Close()

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	var mln net.Listener // IDFLOW_METRICS_LISTEN
	if cfg.MetricsListen != "" {
		if mln, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			ln.Close()
			return fmt.Errorf("IDFLOW_METRICS_LISTEN: %w", err)
		}
	}
	// No ReadTimeout or WriteTimeout: WebSockets and event streams live
	// long. Each request body gets its own deadline instead
	// (IDFLOW_BODY_TIMEOUT, httpapi's middleware); headers get 10 s.
	srv := &http.Server{
		Handler:           app.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	for _, f := range app.onShutdown {
		srv.RegisterOnShutdown(f)
	}
	if cfg.Dev {
		printDevBanner(stdout, cfg, ln.Addr().String())
	}
	log.Info("listening", "addr", ln.Addr().String(), "public_url", cfg.PublicURL, "dev", cfg.Dev)
	if cfg.allowVerify {
		log.Warn("IDFLOW_ALLOW_VERIFY is on: /readyz invites `idflow verify`, which creates and removes test objects as the users whose tokens it is given")
	}
	_ = logw.Flush() // everything said at start-up is out before the first request
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	if mln != nil {
		msrv := metricsServer(app.metrics, log)
		defer msrv.Close()
		log.Info("metrics listening without authentication", "addr", mln.Addr().String())
		go func() { errc <- fmt.Errorf("metrics: %w", msrv.Serve(mln)) }()
	}
	select {
	case err := <-errc:
		_ = srv.Close()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// application is everything `serve` wires together.
type application struct {
	handler    http.Handler
	metrics    http.Handler // the Prometheus exposition, for IDFLOW_METRICS_LISTEN
	cleanups   cleanups     // what build opened
	onShutdown []func()     // run when the HTTP server starts shutting down
}

// Close closes everything build opened.
func (a *application) Close() { a.cleanups.run() }

// cleanups close what was opened, the last first.
type cleanups []func() error

// add registers close (nil: nothing to close).
func (c *cleanups) add(close func() error) {
	if close != nil {
		*c = append(*c, close)
	}
}

func (c cleanups) run() {
	for i := len(c) - 1; i >= 0; i-- {
		_ = c[i]()
	}
}

// build wires idflow together, one step after the other. Each step that
// opens something registers how to close it on app.cleanups; when a step
// fails, everything opened before it is closed, in one place.
func build(ctx context.Context, cfg *config, log *slog.Logger) (_ *application, err error) {
	app := &application{}
	defer func() {
		if err != nil {
			app.Close()
		}
	}()
	m := metrics.New(log)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	id, err := trustedIdentity(ctx, cfg, m, log) // identity.go: the dev issuer, an OpenID issuer, or none
	if err != nil {
		return nil, err
	}
	proxy, err := proxyConfig(cfg, m, log)
	if err != nil {
		return nil, err
	}
	signer, signingKey, err := assertionSigner(cfg)
	if err != nil {
		return nil, err
	}
	be, err := openBackend(ctx, cfg, log) // SQLite by default, PostgreSQL for postgres:// (postgres.go)
	if err != nil {
		return nil, err
	}
	app.cleanups.add(be.close)
	db := be.store
	blobs, err := blobStore(cfg, be)
	if err != nil {
		return nil, err
	}
	policy, err := authz.Load(cfg.PolicyFile)
	if err != nil {
		return nil, err
	}
	webLogin, err := browserLogin(cfg, id.login, id.verifier, db, log) // browser.go
	if err != nil {
		return nil, err
	}
	rc, err := sharedRedis(ctx, cfg) // cachebus.go; nil unless IDFLOW_CACHE_URL is Redis
	if err != nil {
		return nil, err
	}
	if rc != nil {
		app.cleanups.add(rc.Close) // closed after everything below that uses it
	}
	life, err := lifecycleSet(ctx, db, rc, log) // lifecycle.go: who is disabled, directory groups
	if err != nil {
		return nil, err
	}
	app.cleanups.add(life.Close)
	cacheBackend, bus, closeCache, err := cacheAndBus(cfg, rc, log)
	if err != nil {
		return nil, err
	}
	app.cleanups.add(closeCache)
	fair, err := newFairUse(cfg, m, policy, rc, log) // limits.go
	if err != nil {
		return nil, err
	}
	svc, err := newService(cfg, db, blobs, cacheBackend, policy, signingKey, log, fair)
	if err != nil {
		return nil, err
	}
	fair.audit = svc.BudgetExhausted
	svc.SetLifecycle(life, splitComma(cfg.SCIMClients))
	downstream, err := buildDownstream(cfg, id.dev, db, svc, m, log) // connections.go: vault, providers, connect flow
	if err != nil {
		return nil, err
	}
	mcpServers, err := buildMCPServers(cfg, signer, downstream, log) // mcpservers.go: a tools.Source
	if err != nil {
		return nil, err
	}
	app.cleanups.add(mcpServers.Close)
	startRuns := &lateRuns{} // connections.go: start_workflow reaches the runner, built below
	catalog, err := downstream.Catalog(svc, startRuns, log, mcpServers)
	if err != nil {
		return nil, err
	}
	svc.SetToolCatalog(catalog)
	ex := runner.NewExecutor(svc, m.CountRunStates(db), bus, catalog, log)
	runs, stopRuns, err := startRunner(ctx, be, ex, startRuns, m)
	if err != nil {
		return nil, err
	}
	app.cleanups.add(stopRuns)
	mcpServer, err := newMCP(cfg, id, svc, catalog, downstream.Connector(), log) // mcp.go
	if err != nil {
		return nil, err
	}
	app.onShutdown = append(app.onShutdown, mcpServer.Close)
	mcpAuth, err := newMCPAuthorization(cfg, id, signingKey, signer, db, webLogin, proxy, mcpServer.Scopes(), svc, m, log) // mcpauth.go
	if err != nil {
		return nil, err
	}
	authn := authenticator(cfg, id.verifier, proxy, webLogin, mcpAuth.own, svc, life) // browser.go; svc resolves personal access tokens, life who is disabled
	deps := httpapi.Deps{Log: log, Authn: authn, Signer: signer, Store: db, Svc: svc, Runs: runs, Bus: bus, Ready: db.Ping,
		Login: webLogin, Connections: downstream.HTTP(), MCP: mcpServer, Metrics: m.Handler(), Observer: m}
	deps.Limiter, deps.OnLimit = fair.limiter, fair.onLimit
	if id.dev != nil {
		deps.DevIdP = id.dev.Handler()
	}
	if mcpAuth.server != nil { // a nil *authserver.Server must not become a non-nil interface
		deps.AuthServer = mcpAuth.server
	}
	srv := httpapi.New(httpapi.Config{
		PublicURL: cfg.PublicURL, APIAudiences: id.apiAudiences, MCPAudience: id.mcpAudience,
		InternalClients: id.internalClients, InternalRole: cfg.InternalRole, SCIMClients: splitComma(cfg.SCIMClients),
		CORSOrigins:          splitComma(cfg.CORSOrigins),
		InsecureWSQueryToken: cfg.InsecureWSQueryToken, WSMaxPerUser: cfg.wsMaxPerUser,
		BodyTimeout: cfg.bodyTimeout, MaxBodiesPerPeer: cfg.peerBodies,
		AllowVerify:  cfg.allowVerify,
		TurnsPerUser: cfg.turnsPerUser, StreamsPerUser: cfg.streamsPerUser, IngestBytesPerUser: int64(cfg.ingestBytes),
	}, deps)
	if err := errors.Join(m.Gauge(metrics.GaugeWebSockets, srv.OpenWebSockets),
		m.Gauge(metrics.GaugeMCPSessions, mcpServer.OpenSessions), m.Gauge(metrics.GaugeRunsExecuting, ex.Executing),
		m.AuditDenialsDropped(srv.AuditDenialsDropped)); err != nil {
		return nil, err
	}
	wireDeactivation(svc, life, runs, downstream.mgr, srv, mcpServer, mcpAuth.server) // lifecycle.go
	app.handler, app.metrics = srv, m.Handler()
	return app, nil
}

// blobStore is where document bytes live: the database's own store when it
// has one (PostgreSQL), else files in the data dir.
func blobStore(cfg *config, be *backend) (idflow.BlobStore, error) {
	if be.blobs != nil {
		return be.blobs, nil
	}
	return files.New(filepath.Join(cfg.DataDir, "files"))
}

// newService builds the use cases over the store, with the configured
// model (metered into the usage store) and the policy.
func newService(cfg *config, db idflow.Store, blobs idflow.BlobStore, cacheBackend idflow.CacheBackend, policy *authz.Policy,
	signingKey *ecdsa.PrivateKey, log *slog.Logger, fair *fairUse) (*service.Service, error) {
	model, models, err := chatModel(cfg, signingKey, db, log)
	if err != nil {
		return nil, err
	}
	model = fair.model(model) // budgets are checked before the call is metered
	erasureKey, err := derivedKey(signingKey, "idflow audit erasure key v1")
	if err != nil {
		return nil, err
	}
	return service.New(service.Config{AdminRole: cfg.AdminRole, PlatformAdminRole: cfg.platformAdminRole(),
		DefaultModel: models[0], Models: models, ErasureKey: erasureKey,
		AgentMaxSteps: cfg.agentMaxSteps, AgentMemoryK: noneIfZero(cfg.agentMemoryK),
		AgentHistoryTokens: noneIfZero(cfg.agentHistoryTokens), AgentTurnTimeout: cfg.agentTurnTimeout}, service.Deps{
		Store: db, Blobs: blobs, Cache: cache.NewScoped(cacheBackend, 5*time.Minute),
		Model: model, Policy: policy, Log: log, Budgets: fair.budgets,
	}), nil
}

// startRunner builds River's client on the database for ex, hands its runs
// to late, and starts working them; stop stops River.
func startRunner(ctx context.Context, be *backend, ex *runner.Executor, late *lateRuns, m *metrics.Metrics) (_ httpapi.Runs, stop func() error, _ error) {
	runs, river, err := be.runner(ex)
	if err != nil {
		return nil, nil, err
	}
	runs = m.CountRunStarts(runs)
	late.runs = runs // before River starts: a resumed run's tool step may start a run
	if err := river.Start(ctx); err != nil {
		return nil, nil, fmt.Errorf("river start: %w", err)
	}
	return runs, func() error {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return river.Stop(stopCtx)
	}, nil
}

// metricsServer serves /metrics without authentication, for the listener
// of IDFLOW_METRICS_LISTEN: an address only the scraper reaches (loopback,
// a pod-internal port). Everything else there answers 404.
func metricsServer(h http.Handler, log *slog.Logger) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// noneIfZero maps a setting's 0 ("none") to the service's negative.
func noneIfZero(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// chatModel is the configured model, recording every call's usage, and
// the names callers may use. The key of the hashed `user` sent to the model
// is derived from the assertion key, which every replica shares
// (docs/MODELS.md).
func chatModel(cfg *config, signingKey *ecdsa.PrivateKey, usage idflow.UsageStore, log *slog.Logger) (idflow.ChatModel, []string, error) {
	metered := func(m idflow.ChatModel) idflow.ChatModel {
		return llm.Metered{Model: m, Usage: usage, Log: log.With("component", "llm")}
	}
	if cfg.LLMURL == "" {
		return metered(llm.Echo{}), []string{llm.EchoModelName}, nil
	}
	name := cfg.LLMModel
	if name == "" {
		name = "gpt-4o-mini"
	}
	userKey, err := derivedKey(signingKey, "idflow llm user key v1")
	if err != nil {
		return nil, nil, err
	}
	m, err := llm.NewOpenAI(llm.OpenAIConfig{BaseURL: cfg.LLMURL, APIKey: cfg.LLMAPIKey, Model: name, UserKey: userKey,
		Timeout: cfg.llmTimeout, MaxRetries: cfg.llmMaxRetries})
	if err != nil {
		return nil, nil, fmt.Errorf("IDFLOW_LLM_URL: %w", err)
	}
	return metered(m), []string{name}, nil
}

// derivedKey is a 32-byte key for purpose, derived from the assertion
// key, which every replica shares: the model's hashed user (docs/MODELS.md)
// and the erased user's mark in the audit chain (docs/SECURITY.md).
func derivedKey(signingKey *ecdsa.PrivateKey, purpose string) ([]byte, error) {
	secret, err := signingKey.Bytes()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", purpose, err)
	}
	key, err := hkdf.Key(sha256.New, secret, nil, purpose, 32)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", purpose, err)
	}
	return key, nil
}

// redactURL drops credentials from a URL before it is shown.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}

// assertionSigner answers the signer of X-Idflow-Assertion and its key.
func assertionSigner(cfg *config) (*auth.Signer, *ecdsa.PrivateKey, error) {
	var key *ecdsa.PrivateKey
	var err error
	if cfg.AssertionKey != "" {
		if key, err = auth.ParseECKey([]byte(cfg.AssertionKey)); err != nil {
			return nil, nil, fmt.Errorf("IDFLOW_ASSERTION_KEY: %w", err)
		}
	} else if key, err = auth.LoadOrCreateECKey(filepath.Join(cfg.DataDir, "assertion-key.pem")); err != nil {
		return nil, nil, err
	}
	signer, err := auth.NewSigner(key, cfg.PublicURL)
	return signer, key, err
}

func newLogger(cfg *config, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Dev {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func printDevBanner(w io.Writer, cfg *config, addr string) {
	base := cfg.PublicURL
	var users []string
	for _, u := range devidp.Users {
		d := u.Login + " (tenant " + u.Tenant
		if len(u.Roles) > 0 {
			d += ", role " + strings.Join(u.Roles, ",")
		}
		users = append(users, d+")")
	}
	fmt.Fprintf(w, `
================================================================
 idflow DEV MODE — not for production
 listening on %s (loopback only)
 data dir:    %s (SQLite, files, dev keys)
 dev issuer:  %s/dev/idp
 users:       %s
 admins:      role %q administers its own tenant only; role %q every tenant (audited as such)
 sign in:     open %s/ in a browser
 curl:        curl -H "Authorization: Bearer $(go run ./cmd/idflow dev-token alice)" %s/api/v1/me
 app token:   client_credentials with %s / %s at %s/dev/idp/token
 downstream:  POST /api/v1/connections/dev/connect, then a workflow tool step
              downstream_get {"provider":"dev","path":"/whoami"} (docs/CONNECTIONS.md)
================================================================
`, addr, cfg.DataDir, base, strings.Join(users, ", "), cfg.AdminRole, cfg.platformAdminRole(), base, base, devidp.AppClientID, devAppSecret, base)
}
