package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Discovery is the part of an OpenID provider's metadata idflow uses.
type Discovery struct {
	Issuer                      string   `json:"issuer"`
	JWKSURI                     string   `json:"jwks_uri"`
	AuthorizationEndpoint       string   `json:"authorization_endpoint"`
	TokenEndpoint               string   `json:"token_endpoint"`
	UserinfoEndpoint            string   `json:"userinfo_endpoint,omitempty"`
	EndSessionEndpoint          string   `json:"end_session_endpoint,omitempty"`
	RevocationEndpoint          string   `json:"revocation_endpoint,omitempty"`
	DeviceAuthorizationEndpoint string   `json:"device_authorization_endpoint,omitempty"`
	ScopesSupported             []string `json:"scopes_supported,omitempty"`
}

// Discover fetches issuer's /.well-known/openid-configuration. The issuer it
// states must equal the one asked for, except for Entra's multi-tenant
// endpoints (common, organizations), whose metadata names {tenantid}.
func Discover(ctx context.Context, client *http.Client, issuer string) (Discovery, error) {
	if client == nil {
		client = http.DefaultClient
	}
	url := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Discovery{}, fmt.Errorf("discovery request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return Discovery{}, fmt.Errorf("discovery: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Discovery{}, fmt.Errorf("discovery %s: status %d", url, resp.StatusCode)
	}
	var d Discovery
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&d); err != nil {
		return Discovery{}, fmt.Errorf("discovery decode: %w", err)
	}
	if d.JWKSURI == "" {
		return Discovery{}, errors.New("discovery: no jwks_uri")
	}
	if d.Issuer != issuer && !(strings.Contains(d.Issuer, TenantPlaceholder) && multiTenantAlias(issuer, d.Issuer)) {
		return Discovery{}, fmt.Errorf("discovery: issuer %q does not match %q", d.Issuer, issuer)
	}
	return d, nil
}

// multiTenantAlias reports whether issuer is an Entra alias endpoint whose
// metadata names the {tenantid} template.
func multiTenantAlias(issuer, template string) bool {
	for _, alias := range []string{"common", "organizations", "consumers"} {
		if strings.ReplaceAll(template, TenantPlaceholder, alias) == issuer {
			return true
		}
	}
	return false
}
