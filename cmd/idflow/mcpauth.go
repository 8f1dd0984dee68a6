package main

import (
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/authserver"
	"github.com/idflow/idflow/metrics"
	"github.com/idflow/idflow/service"
	"github.com/idflow/idflow/web"
)

// mcpTokenKeyPurpose derives the key of idflow's MCP access tokens from
// the assertion key (auth.DeriveECKey): every replica that shares
// IDFLOW_ASSERTION_KEY verifies every replica's tokens.
const mcpTokenKeyPurpose = "mcp access token key v1"

// mcpAuthorization is idflow's own authorization server for /mcp
// (IDFLOW_MCP_AUTH=idflow), and how the authenticator accepts its tokens;
// both nil with IDFLOW_MCP_AUTH=upstream.
type mcpAuthorization struct {
	server *authserver.Server
	own    *auth.OwnTokens
}

// newMCPAuthorization builds the authorization server: its access tokens
// are signed with a key derived from the assertion key and published in
// the JWKS next to it; they are accepted on /mcp only, while their grant
// stands. Its users sign in through the browser login (or a trusted
// proxy), so one of them is required.
func newMCPAuthorization(cfg *config, id identity, signingKey *ecdsa.PrivateKey, signer *auth.Signer, db idflow.Store,
	login *web.Login, proxy *auth.ProxyConfig, scopes []string, svc *service.Service, m *metrics.Metrics, log *slog.Logger) (mcpAuthorization, error) {
	var none mcpAuthorization
	if cfg.mcpAuth() != "idflow" {
		return none, nil
	}
	if login == nil && (proxy == nil || len(proxy.Trusted) == 0) {
		return none, errors.New("IDFLOW_MCP_AUTH=idflow: users sign in to authorize MCP clients through the browser login (IDFLOW_OIDC_CLIENT_ID) or a trusted proxy (IDFLOW_TRUSTED_PROXIES); configure one, or set IDFLOW_MCP_AUTH=upstream")
	}
	if id.issuer == cfg.PublicURL {
		return none, errors.New("IDFLOW_MCP_AUTH=idflow: the upstream issuer cannot be idflow's own public URL")
	}
	key, err := auth.DeriveECKey(signingKey, mcpTokenKeyPurpose)
	if err != nil {
		return none, err
	}
	tokens, err := auth.NewSigner(key, cfg.PublicURL)
	if err != nil {
		return none, err
	}
	signer.AlsoPublish(tokens)
	fetch := authserver.FetchConfig{InsecureAllowPrivateAddresses: cfg.Dev || cfg.InsecureMCPCIMDPrivate}
	if cfg.MCPCIMDCAFile != "" {
		pem, err := os.ReadFile(cfg.MCPCIMDCAFile)
		if err != nil {
			return none, fmt.Errorf("IDFLOW_MCP_CIMD_CA_FILE: %w", err)
		}
		if fetch.RootCAs, err = x509.SystemCertPool(); err != nil {
			fetch.RootCAs = x509.NewCertPool()
		}
		if !fetch.RootCAs.AppendCertsFromPEM(pem) {
			return none, errors.New("IDFLOW_MCP_CIMD_CA_FILE: no PEM certificate in the file")
		}
	}
	as, err := authserver.New(authserver.Config{Issuer: cfg.PublicURL, Resource: id.mcpAudience, Scopes: scopes, Fetch: fetch},
		authserver.Deps{Store: db, Tokens: tokens, Audit: svc.Audit, Log: log.With("component", "authserver")})
	if err != nil {
		return none, err
	}
	v, err := auth.NewVerifier(auth.VerifierConfig{Issuers: []string{cfg.PublicURL}, Audiences: []string{id.mcpAudience},
		UserClaims: []string{"sub"}, OnCacheLookup: m.TokenCacheLookups()}, tokens.KeySet())
	if err != nil {
		return none, err
	}
	return mcpAuthorization{server: as, own: &auth.OwnTokens{Issuer: cfg.PublicURL, Verifier: v, Check: as.CheckGrant}}, nil
}
