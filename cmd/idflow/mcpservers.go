package main

import (
	"fmt"
	"log/slog"

	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/mcpclient"
)

// buildMCPServers reads IDFLOW_MCP_SERVERS_FILE and returns its servers as
// a tools.Source for the tool catalog: every server's tools, as
// <server>__<tool>, run as the caller with the caller's own credential
// (docs/DOWNSTREAM_MCP.md). The file is validated here, at start: unknown
// fields, duplicate or invalid names, URLs that are not https (http only on
// loopback), and connection or exchange servers whose provider is not in
// IDFLOW_PROVIDERS_FILE (or is of the other kind) refuse the start. Without
// a file the Source has no servers and offers no tools.
func buildMCPServers(cfg *config, signer *auth.Signer, downstream downstreamParts, log *slog.Logger) (*mcpclient.Servers, error) {
	var sc mcpclient.Config
	if cfg.MCPServersFile != "" {
		var err error
		if sc, err = mcpclient.Load(cfg.MCPServersFile); err != nil {
			return nil, fmt.Errorf("IDFLOW_MCP_SERVERS_FILE: %w", err)
		}
	}
	deps := mcpclient.Deps{Signer: signer, Log: log.With("component", "mcpclient")}
	if downstream.mgr != nil { // a nil *Manager in the interface would not read as "none"
		deps.Connections = downstream.mgr
	}
	s, err := mcpclient.New(sc, deps)
	if err != nil {
		return nil, fmt.Errorf("IDFLOW_MCP_SERVERS_FILE: %w", err)
	}
	if names := s.Names(); len(names) > 0 {
		log.Info("downstream mcp servers", "servers", names)
	}
	return s, nil
}
