package main

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/idflow/idflow/mcp"
	"github.com/idflow/idflow/service"
)

// devMCPScope is the API scope the dev issuer grants; MCP clients of a dev
// server are told to ask for it, and the browser login asks for it.
const devMCPScope = "idflow"

// newMCP builds the /mcp server from the configuration; its tools are
// those of the catalog. Its metadata names the trusted issuer, and the API
// scope when IDFLOW_MCP_SCOPES names none. connect (nil: no provider)
// starts the connect flow a tool needing a connection elicits.
func newMCP(cfg *config, id identity, svc *service.Service, catalog mcp.Catalog, connect mcp.Connector, log *slog.Logger) (*mcp.Server, error) {
	toolScopes, err := parseToolScopes(cfg.MCPToolScopes)
	if err != nil {
		return nil, err
	}
	scopes := splitComma(cfg.MCPScopes)
	for _, sc := range scopes {
		if strings.ContainsAny(sc, " \"\\") {
			return nil, fmt.Errorf("IDFLOW_MCP_SCOPES: %q is not a scope", sc)
		}
	}
	var issuers []string
	if id.issuer != "" {
		issuers = []string{id.issuer}
	}
	if cfg.mcpAuth() == "idflow" { // mcpauth.go: idflow is the authorization server
		issuers = []string{cfg.PublicURL}
	}
	if len(scopes) == 0 && id.scope != "" {
		scopes = []string{id.scope}
	}
	return mcp.New(mcp.Config{
		PublicURL: cfg.PublicURL, AuthorizationServers: issuers, ToolScopes: toolScopes, Scopes: scopes,
		SessionTimeout: cfg.mcpIdleTimeout, MaxSessionsPerUser: cfg.mcpMaxSessions, Version: version(),
	}, mcp.Deps{Svc: svc, Tools: catalog, Connect: connect, Log: log.With("component", "mcp")})
}

// parseToolScopes reads IDFLOW_MCP_TOOL_SCOPES: comma-separated tool:scope
// pairs ("*" for every tool); a tool named twice needs both scopes.
func parseToolScopes(s string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, pair := range splitComma(s) {
		tool, scope, ok := strings.Cut(pair, ":")
		tool, scope = strings.TrimSpace(tool), strings.TrimSpace(scope)
		if !ok || tool == "" || scope == "" || strings.ContainsAny(scope, " \"") {
			return nil, fmt.Errorf("IDFLOW_MCP_TOOL_SCOPES: %q is not tool:scope", pair)
		}
		out[tool] = append(out[tool], scope)
	}
	return out, nil
}
