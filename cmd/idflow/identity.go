package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/devidp"
	"github.com/idflow/idflow/metrics"
)

// devAudience is the API audience of dev tokens.
const devAudience = "idflow"

// devAppSecret is the client_credentials secret of the dev app client. It is
// only ever accepted by the dev issuer, which only exists on loopback.
const devAppSecret = "idflow-dev-secret"

// identity is whom idflow trusts and how people sign in. It is decided
// once, from the configuration: the dev issuer in --dev, the configured
// OpenID issuer, or trusted proxies alone.
type identity struct {
	verifier        *auth.Verifier // bearer tokens; nil: none are accepted
	apiAudiences    []string       // accepted on API routes
	mcpAudience     string         // accepted on /mcp too: <public url>/mcp
	internalClients []string       // app-only callers of /internal/v1/*
	issuer          string         // the authorization server MCP clients are sent to; "" none
	scope           string         // the API scope clients ask for; "" none
	login           *loginParts    // the browser login's client (browser.go); nil: none
	dev             *devIssuer     // --dev only
}

// devIssuer is the built-in dev OpenID issuer of --dev and its endpoints,
// which the verifier, the browser login and the dev downstream provider
// all use.
type devIssuer struct {
	*devidp.Issuer
	disc auth.Discovery
}

// trustedIdentity builds the identity of cfg: the dev issuer (--dev), the
// configured issuer (discovered, retrying while it is down), or none
// (trusted proxies only).
func trustedIdentity(ctx context.Context, cfg *config, m *metrics.Metrics, log *slog.Logger) (identity, error) {
	id := identity{apiAudiences: splitComma(cfg.OIDCAudience), mcpAudience: cfg.PublicURL + "/mcp",
		internalClients: splitComma(cfg.InternalClients), scope: cfg.OIDCRequiredScope}
	switch {
	case cfg.Dev:
		return devIdentity(cfg, id, m)
	case cfg.OIDCIssuer != "":
		return oidcIdentity(ctx, cfg, id, m, log)
	}
	return id, nil
}

// devIdentity builds the dev issuer and trusts it alone, with its users,
// its app client on /internal/v1/*, and its API scope.
func devIdentity(cfg *config, id identity, m *metrics.Metrics) (identity, error) {
	if len(id.apiAudiences) == 0 {
		id.apiAudiences = []string{devAudience}
	}
	if len(id.internalClients) == 0 {
		id.internalClients = []string{devidp.AppClientID}
	}
	iss := cfg.PublicURL + devidp.Path
	issuer, err := devidp.New(devidp.Config{
		Issuer: iss, Audience: id.apiAudiences[0], ExtraAudience: id.mcpAudience,
		AppSecret: devAppSecret, KeyFile: filepath.Join(cfg.DataDir, "dev-issuer-key.pem"),
		Downstream: devDownstream(cfg), // connections.go
	})
	if err != nil {
		return id, err
	}
	id.dev = &devIssuer{Issuer: issuer, disc: auth.Discovery{Issuer: iss, AuthorizationEndpoint: iss + "/authorize",
		TokenEndpoint: iss + "/token", RevocationEndpoint: iss + "/revoke", EndSessionEndpoint: iss + "/logout",
		JWKSURI: iss + "/jwks.json"}}
	if id.verifier, err = auth.NewVerifier(verifierConfig(cfg, id, []string{iss}, m), auth.NewStaticKeySet(issuer.PublicJWK())); err != nil {
		return id, err
	}
	id.issuer, id.scope = iss, devMCPScope
	id.login = &loginParts{clientID: devidp.PublicClientID, disc: id.dev.disc,
		scopes: []string{"openid", "profile", "email", "offline_access", devMCPScope}}
	return id, nil
}

// oidcIdentity trusts the configured issuer: its discovery and JWKS, and
// with IDFLOW_OIDC_CLIENT_ID, the browser login against it.
func oidcIdentity(ctx context.Context, cfg *config, id identity, m *metrics.Metrics, log *slog.Logger) (identity, error) {
	issuers := splitComma(cfg.OIDCIssuer)
	client := &http.Client{Timeout: 10 * time.Second}
	disc, err := discoverWithRetry(ctx, client, issuers[0], log)
	if err != nil {
		return id, err
	}
	keys := auth.NewRemoteKeySet(disc.JWKSURI, client, 0, log).ObserveFetches(m.JWKSFetches("oidc"))
	if err := keys.Refresh(ctx); err != nil {
		log.Warn("initial jwks fetch failed; will retry on demand", "err", err)
	}
	vc := verifierConfig(cfg, id, append([]string{disc.Issuer}, issuers[1:]...), m)
	vc.Tenants = splitComma(cfg.OIDCTenants)
	if id.verifier, err = auth.NewVerifier(vc, keys); err != nil {
		return id, err
	}
	id.issuer = issuers[0]
	if cfg.OIDCClientID != "" {
		scopes := []string{"openid", "profile", "email", "offline_access"}
		if cfg.OIDCRequiredScope != "" {
			scopes = append(scopes, cfg.OIDCRequiredScope)
		}
		id.login = &loginParts{clientID: cfg.OIDCClientID, secret: cfg.OIDCClientSecret, disc: disc, scopes: scopes}
	}
	return id, nil
}

// discoverWithRetry discovers issuer, retrying for a while when it is down
// at start.
func discoverWithRetry(ctx context.Context, client *http.Client, issuer string, log *slog.Logger) (auth.Discovery, error) {
	var disc auth.Discovery
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		disc, err = auth.Discover(ctx, client, issuer)
		if err == nil {
			return disc, nil
		}
		log.Warn("oidc discovery failed; retrying", "issuer", issuer, "err", err)
		select {
		case <-ctx.Done():
			return disc, ctx.Err()
		case <-time.After(time.Duration(attempt+1) * time.Second):
		}
	}
	return disc, fmt.Errorf("oidc discovery: %w", err)
}

// verifierConfig is how bearer tokens of issuers are checked: for the API's
// and the MCP resource's audiences, with the configured claims and scope.
func verifierConfig(cfg *config, id identity, issuers []string, m *metrics.Metrics) auth.VerifierConfig {
	return auth.VerifierConfig{
		Issuers:                issuers,
		Audiences:              append(append([]string{}, id.apiAudiences...), id.mcpAudience),
		UserClaims:             splitComma(cfg.OIDCUserClaim),
		InsecureAcceptIDTokens: cfg.InsecureOIDCAcceptIDTokens,
		RequiredScope:          cfg.OIDCRequiredScope,
		OnCacheLookup:          m.TokenCacheLookups(),
	}
}

// proxyConfig is which proxies' identity headers count
// (IDFLOW_TRUSTED_PROXIES), and how a signed one is checked.
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
