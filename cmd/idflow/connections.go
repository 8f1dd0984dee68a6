package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/connections"
	"github.com/idflow/idflow/devidp"
	"github.com/idflow/idflow/httpapi"
	"github.com/idflow/idflow/mcp"
	"github.com/idflow/idflow/metrics"
	"github.com/idflow/idflow/service"
	"github.com/idflow/idflow/tools"
	"github.com/idflow/idflow/vault"
)

// devDownstreamSecret is the client secret of the dev downstream client. It
// is only ever accepted by the dev issuer, which only exists on loopback.
const devDownstreamSecret = "idflow-dev-downstream-secret"

// devProviderName is the downstream provider --dev configures when no
// providers file is given.
const devProviderName = "dev"

// devProviderActive reports whether --dev runs its own downstream provider.
func devProviderActive(cfg *config) bool { return cfg.Dev && cfg.ProvidersFile == "" }

// devDownstream configures the dev issuer's demo downstream API.
func devDownstream(cfg *config) devidp.DownstreamConfig {
	if !devProviderActive(cfg) {
		return devidp.DownstreamConfig{}
	}
	return devidp.DownstreamConfig{Secret: devDownstreamSecret,
		RedirectURI: cfg.PublicURL + "/api/v1/connections/" + devProviderName + "/callback",
		Audience:    cfg.PublicURL + devidp.DownstreamPath}
}

// downstreamParts is the vault and connect flow, when configured.
type downstreamParts struct {
	mgr *connections.Manager // nil: no downstream provider is configured
}

// HTTP is what httpapi serves /api/v1/connections with (nil: no routes).
func (d downstreamParts) HTTP() httpapi.Connections {
	if d.mgr == nil {
		return nil
	}
	return d.mgr
}

// Downstream is what the MCP tools call (nil: none).
func (d downstreamParts) Downstream() idflow.Downstream {
	if d.mgr == nil {
		return nil
	}
	return d.mgr
}

// Connector starts the connect flow /mcp elicits (nil: none).
func (d downstreamParts) Connector() mcp.Connector {
	if d.mgr == nil {
		return nil
	}
	return d.mgr
}

// Catalog is the one tool catalog of agent turns, workflow steps and /mcp:
// the built-in tools (downstream_get when a provider is configured) and
// those of sources.
func (d downstreamParts) Catalog(svc *service.Service, runs tools.Runs, log *slog.Logger, sources ...tools.Source) (*tools.Catalog, error) {
	var conns tools.Connections
	if d.mgr != nil {
		conns = d.mgr
	}
	return tools.New(tools.Config{}, tools.Deps{Svc: svc, Runs: runs, Downstream: d.Downstream(), Connections: conns, Sources: sources,
		Log: log.With("component", "tools")})
}

// lateRuns lets the catalog's start_workflow reach the runner, which is
// built after the executor that needs the catalog for its tool steps. It
// is set before River starts and before anything is served.
type lateRuns struct{ runs tools.Runs }

func (l *lateRuns) Start(ctx context.Context, p idflow.Principal, workflowID string, input json.RawMessage, version int) (idflow.Run, error) {
	if l.runs == nil {
		return idflow.Run{}, idflow.Errorf(idflow.EUNAVAILABLE, "workflow runs are not available yet")
	}
	return l.runs.Start(ctx, p, workflowID, input, version)
}

// buildDownstream reads the providers (IDFLOW_PROVIDERS_FILE, or in --dev
// the dev issuer's downstream provider) and the vault keys (IDFLOW_VAULT_KEY, or in --dev only
// a key generated into the data dir). Without any provider there is nothing
// to build, and no key is needed; with providers, production refuses to
// start without IDFLOW_VAULT_KEY.
func buildDownstream(cfg *config, dev *devIssuer, store idflow.Store, svc *service.Service, m *metrics.Metrics, log *slog.Logger) (downstreamParts, error) {
	var reg *connections.Registry
	switch {
	case cfg.ProvidersFile != "":
		r, err := connections.LoadProviders(cfg.ProvidersFile, cfg.getenv)
		if err != nil {
			return downstreamParts{}, fmt.Errorf("IDFLOW_PROVIDERS_FILE: %w", err)
		}
		reg = r
	case devProviderActive(cfg):
		r, err := connections.NewRegistry([]connections.Provider{{
			Name: devProviderName, AuthorizeURL: dev.disc.AuthorizationEndpoint, TokenURL: dev.disc.TokenEndpoint, RevocationURL: dev.disc.RevocationEndpoint,
			ClientID: devidp.DownstreamClientID, ClientSecret: devDownstreamSecret, Scopes: []string{"openid", "profile"},
			APIBaseURL: cfg.PublicURL + devidp.DownstreamPath,
		}}, cfg.getenv)
		if err != nil {
			return downstreamParts{}, fmt.Errorf("dev provider: %w", err)
		}
		reg = r
	default:
		return downstreamParts{}, nil
	}
	keys, err := vaultKeyring(cfg, "IDFLOW_PROVIDERS_FILE is set: downstream credentials", log)
	if err != nil {
		return downstreamParts{}, err
	}
	mgr, err := connections.New(connections.Config{PublicURL: cfg.PublicURL, Providers: reg, Store: store, Keys: keys,
		Audit: svc, Log: log.With("component", "connections"), Vault: vault.Config{OnRefresh: m.VaultRefreshes()}})
	if err != nil {
		return downstreamParts{}, err
	}
	log.Info("downstream connections", "providers", reg.Names(), "vault_keys", keys.KeyIDs())
	return downstreamParts{mgr: mgr}, nil
}

// vaultKeyring returns the keys of IDFLOW_VAULT_KEY; in dev only, a key
// generated into the data dir. need names what needs it, for the error.
func vaultKeyring(cfg *config, need string, log *slog.Logger) (*vault.Keyring, error) {
	if cfg.VaultKey != "" {
		k, err := vault.ParseKeyring(cfg.VaultKey)
		if err != nil {
			return nil, fmt.Errorf("IDFLOW_VAULT_KEY: %w", err)
		}
		return k, nil
	}
	if !cfg.Dev {
		return nil, errors.New("IDFLOW_VAULT_KEY is required because " + need + " are sealed with it " +
			"(generate one with `head -c 32 /dev/urandom | base64`)")
	}
	k, err := vault.LoadOrCreateKeyFile(filepath.Join(cfg.DataDir, "vault-key"))
	if err != nil {
		return nil, err
	}
	log.Debug("dev mode: vault key kept in the data dir; production needs IDFLOW_VAULT_KEY")
	return vault.ParseKeyring(k)
}
