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
	"github.com/idflow/idflow/llm"
	"github.com/idflow/idflow/metrics"
	"github.com/idflow/idflow/runner"
	"github.com/idflow/idflow/service"
)

// devAudience is the API audience of dev tokens.
const devAudience = "idflow"

// devAppSecret is the client_credentials secret of the dev app client. It is
// only ever accepted by the dev issuer, which only exists on loopback.
const devAppSecret = "idflow-dev-secret"

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
	log := newLogger(cfg, stderr)
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
	closers    []func() error
	onShutdown []func() // run when the HTTP server starts shutting down
}

func (a *application) Close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		_ = a.closers[i]()
	}
}

func build(ctx context.Context, cfg *config, log *slog.Logger) (*application, error) {
	app := &application{}
	m := metrics.New(log)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	apiAudiences := splitComma(cfg.OIDCAudience)
	mcpAudience := cfg.PublicURL + "/mcp"

	var verifier *auth.Verifier
	var devIssuer *devidp.Issuer
	var login *loginParts // the browser login's issuer, when one is configured
	internalClients := splitComma(cfg.InternalClients)
	if cfg.Dev {
		if len(apiAudiences) == 0 {
			apiAudiences = []string{devAudience}
		}
		var err error
		devIssuer, err = devidp.New(devidp.Config{
			Issuer: cfg.PublicURL + devidp.Path, Audience: apiAudiences[0], ExtraAudience: mcpAudience,
			AppSecret: devAppSecret, KeyFile: filepath.Join(cfg.DataDir, "dev-issuer-key.pem"),
			Downstream: devDownstream(cfg), // connections.go
		})
		if err != nil {
			return nil, err
		}
		if len(internalClients) == 0 {
			internalClients = []string{devidp.AppClientID}
		}
		verifier, err = auth.NewVerifier(auth.VerifierConfig{
			Issuers:        []string{cfg.PublicURL + devidp.Path},
			Audiences:      append(append([]string{}, apiAudiences...), mcpAudience),
			UserClaims:     splitComma(cfg.OIDCUserClaim),
			AcceptIDTokens: cfg.OIDCAcceptIDTokens,
			RequiredScope:  cfg.OIDCRequiredScope,
			OnCacheLookup:  m.TokenCacheLookups(),
		}, auth.NewStaticKeySet(devIssuer.PublicJWK()))
		if err != nil {
			return nil, err
		}
		iss := cfg.PublicURL + devidp.Path
		login = &loginParts{clientID: devidp.PublicClientID,
			scopes: []string{"openid", "profile", "email", "offline_access", "idflow"},
			disc: auth.Discovery{Issuer: iss, AuthorizationEndpoint: iss + "/authorize", TokenEndpoint: iss + "/token",
				EndSessionEndpoint: iss + "/logout", JWKSURI: iss + "/jwks.json"}}
	} else if cfg.OIDCIssuer != "" {
		var disc auth.Discovery
		var err error
		verifier, disc, err = productionVerifier(ctx, cfg, apiAudiences, mcpAudience, m, log)
		if err != nil {
			return nil, err
		}
		if cfg.OIDCClientID != "" {
			scopes := []string{"openid", "profile", "email", "offline_access"}
			if cfg.OIDCRequiredScope != "" {
				scopes = append(scopes, cfg.OIDCRequiredScope)
			}
			login = &loginParts{clientID: cfg.OIDCClientID, secret: cfg.OIDCClientSecret, disc: disc, scopes: scopes}
		}
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
	app.closers = append(app.closers, be.close)
	db, blobs := be.store, be.blobs
	if blobs == nil {
		if blobs, err = files.New(filepath.Join(cfg.DataDir, "files")); err != nil {
			app.Close()
			return nil, err
		}
	}
	policy, err := authz.Load(cfg.PolicyFile)
	if err != nil {
		app.Close()
		return nil, err
	}
	webLogin, err := browserLogin(cfg, login, verifier, db, log) // browser.go
	if err != nil {
		app.Close()
		return nil, err
	}
	authCfg := authConfig(verifier, proxy, webLogin) // browser.go
	authCfg.Origins = append([]string{cfg.PublicURL}, splitComma(cfg.CORSOrigins)...)
	authn := auth.New(authCfg)
	cacheBackend, bus, cacheClosers, err := cacheAndBus(ctx, cfg, log)
	if err != nil {
		app.Close()
		return nil, err
	}
	app.closers = append(app.closers, cacheClosers...)
	model, models, err := chatModel(cfg, signingKey, db, log) // metered into the usage store
	if err != nil {
		app.Close()
		return nil, err
	}
	svc := service.New(service.Config{AdminRole: cfg.AdminRole, PlatformAdminRole: cfg.platformAdminRole(), DefaultModel: models[0], Models: models,
		AgentMaxSteps: cfg.agentMaxSteps, AgentMemoryK: noneIfZero(cfg.agentMemoryK),
		AgentHistoryTokens: noneIfZero(cfg.agentHistoryTokens), AgentTurnTimeout: cfg.agentTurnTimeout}, service.Deps{
		Store: db, Blobs: blobs, Cache: cache.NewScoped(cacheBackend, 5*time.Minute),
		Model: model, Policy: policy, Log: log,
	})
	downstream, err := buildDownstream(cfg, db, svc, m, log) // connections.go: vault, providers, connect flow
	if err != nil {
		app.Close()
		return nil, err
	}
	mcpServers, err := buildMCPServers(cfg, signer, downstream, log) // mcpservers.go: a tools.Source
	if err != nil {
		app.Close()
		return nil, err
	}
	app.closers = append(app.closers, mcpServers.Close)
	startRuns := &lateRuns{} // connections.go
	catalog, err := downstream.Catalog(svc, startRuns, log, mcpServers)
	if err != nil {
		app.Close()
		return nil, err
	}
	svc.SetToolCatalog(catalog)
	ex := runner.NewExecutor(svc, m.CountRunStates(db), bus, catalog, log)
	runs, client, err := be.runner(ex)
	if err != nil {
		app.Close()
		return nil, err
	}
	runs = m.CountRunStarts(runs)
	startRuns.runs = runs
	if err := client.Start(ctx); err != nil {
		app.Close()
		return nil, fmt.Errorf("river start: %w", err)
	}
	app.closers = append(app.closers, func() error {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return client.Stop(stopCtx)
	})

	deps := httpapi.Deps{Log: log, Authn: authn, Signer: signer, Store: db, Svc: svc, Runs: runs, Bus: bus, Ready: db.Ping, Login: webLogin}
	deps.Connections = downstream.HTTP()
	deps.Metrics, deps.Observer = m.Handler(), m
	mcpServer, err := newMCP(cfg, svc, catalog, log)
	if err != nil {
		app.Close()
		return nil, err
	}
	deps.MCP = mcpServer
	app.onShutdown = append(app.onShutdown, mcpServer.Close)
	if devIssuer != nil {
		deps.DevIdP = devIssuer.Handler()
	}
	srv := httpapi.New(httpapi.Config{
		PublicURL: cfg.PublicURL, APIAudiences: apiAudiences, MCPAudience: mcpAudience,
		InternalClients: internalClients, InternalRole: cfg.InternalRole,
		CORSOrigins: splitComma(cfg.CORSOrigins), Dev: cfg.Dev,
		WSQueryToken: cfg.WSQueryToken, WSMaxPerUser: cfg.wsMaxPerUser,
		BodyTimeout: cfg.bodyTimeout, MaxBodiesPerPeer: cfg.peerBodies,
		AllowVerify: cfg.allowVerify,
	}, deps)
	app.handler = srv
	app.metrics = m.Handler()
	if err := errors.Join(m.Gauge(metrics.GaugeWebSockets, srv.OpenWebSockets),
		m.Gauge(metrics.GaugeMCPSessions, mcpServer.OpenSessions), m.Gauge(metrics.GaugeRunsExecuting, ex.Executing),
		m.AuditDenialsDropped(srv.AuditDenialsDropped)); err != nil {
		app.Close()
		return nil, err
	}
	return app, nil
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
	secret, err := signingKey.Bytes()
	if err != nil {
		return nil, nil, fmt.Errorf("model user key: %w", err)
	}
	userKey, err := hkdf.Key(sha256.New, secret, nil, "idflow llm user key v1", 32)
	if err != nil {
		return nil, nil, fmt.Errorf("model user key: %w", err)
	}
	m, err := llm.NewOpenAI(llm.OpenAIConfig{BaseURL: cfg.LLMURL, APIKey: cfg.LLMAPIKey, Model: name, UserKey: userKey,
		Timeout: cfg.llmTimeout, MaxRetries: cfg.llmMaxRetries})
	if err != nil {
		return nil, nil, fmt.Errorf("IDFLOW_LLM_URL: %w", err)
	}
	return metered(m), []string{name}, nil
}

// redactURL drops credentials from a URL before it is shown.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}

// productionVerifier discovers the issuer (retrying while it is down at
// start) and verifies against its JWKS.
func productionVerifier(ctx context.Context, cfg *config, apiAudiences []string, mcpAudience string, m *metrics.Metrics, log *slog.Logger) (*auth.Verifier, auth.Discovery, error) {
	issuers := splitComma(cfg.OIDCIssuer)
	client := &http.Client{Timeout: 10 * time.Second}
	var disc auth.Discovery
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		disc, err = auth.Discover(ctx, client, issuers[0])
		if err == nil {
			break
		}
		log.Warn("oidc discovery failed; retrying", "issuer", issuers[0], "err", err)
		select {
		case <-ctx.Done():
			return nil, disc, ctx.Err()
		case <-time.After(time.Duration(attempt+1) * time.Second):
		}
	}
	if err != nil {
		return nil, disc, fmt.Errorf("oidc discovery: %w", err)
	}
	accepted := append([]string{disc.Issuer}, issuers[1:]...)
	keys := auth.NewRemoteKeySet(disc.JWKSURI, client, 0, log).ObserveFetches(m.JWKSFetches("oidc"))
	if err := keys.Refresh(ctx); err != nil {
		log.Warn("initial jwks fetch failed; will retry on demand", "err", err)
	}
	v, err := auth.NewVerifier(auth.VerifierConfig{
		Issuers:        accepted,
		Audiences:      append(append([]string{}, apiAudiences...), mcpAudience),
		UserClaims:     splitComma(cfg.OIDCUserClaim),
		AcceptIDTokens: cfg.OIDCAcceptIDTokens,
		Tenants:        splitComma(cfg.OIDCTenants),
		RequiredScope:  cfg.OIDCRequiredScope,
		OnCacheLookup:  m.TokenCacheLookups(),
	}, keys)
	return v, disc, err
}

func proxyConfig(cfg *config, m *metrics.Metrics, log *slog.Logger) (*auth.ProxyConfig, error) {
	trusted, err := auth.ParsePrefixes(cfg.TrustedProxies)
	if err != nil {
		return nil, err
	}
	pc := &auth.ProxyConfig{Trusted: trusted, UserHeader: cfg.ProxyUserHeader, AssertionHeader: cfg.ProxyAssertionHeader}
	if cfg.ProxyAssertionHeader != "" {
		iss := cfg.ProxyAssertionIssuer
		if iss == "" {
			u, err := url.Parse(cfg.ProxyAssertionJWKSURL)
			if err != nil {
				return nil, fmt.Errorf("IDFLOW_PROXY_ASSERTION_JWKS_URL: %w", err)
			}
			iss = u.Scheme + "://" + u.Host
		}
		aud := cfg.ProxyAssertionAudience
		if aud == "" {
			aud = cfg.PublicURL
		}
		keys := auth.NewRemoteKeySet(cfg.ProxyAssertionJWKSURL, nil, 0, log).ObserveFetches(m.JWKSFetches("proxy_assertion"))
		pc.Assertions, err = auth.NewAssertionVerifier(iss, aud, keys)
		if err != nil {
			return nil, err
		}
	}
	return pc, nil
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
