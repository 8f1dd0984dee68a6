package httpapi

import (
	"mime"
	"net/http"
	"slices"

	"github.com/idflow/idflow"
)

// MCP is the MCP endpoint and its protected-resource metadata (package mcp).
type MCP interface {
	// ServeMCP serves /mcp for p, verified for this very request (p is in
	// r's context too).
	ServeMCP(w http.ResponseWriter, r *http.Request, p idflow.Principal) error
	// ServeMetadata answers the RFC 9728 protected-resource metadata.
	ServeMetadata(w http.ResponseWriter, r *http.Request) error
	// Challenge is the WWW-Authenticate value of a 401 from /mcp.
	Challenge(r *http.Request, err error) string
}

// mcpAudiences are the audiences /mcp accepts: the API's and the MCP
// resource's own (<public url>/mcp). Other routes accept only the API's, so
// a token minted for the MCP resource cannot be replayed against them.
func (s *Server) mcpAudiences() []string {
	auds := slices.Clone(s.cfg.APIAudiences)
	if s.cfg.MCPAudience != "" {
		auds = append(auds, s.cfg.MCPAudience)
	}
	return auds
}

func (s *Server) handleMCP(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
	if s.mcp == nil {
		return idflow.Errorf(idflow.ENOTFOUND, "no such route")
	}
	// The MCP SDK refuses any other type itself, but in plain text: say it
	// as problem+json, like every other route.
	if r.Method == http.MethodPost {
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			return unsupportedMediaType("application/json")
		}
	}
	err := s.mcp.ServeMCP(w, r, p)
	if err != nil && idflow.ErrorCode(err) == idflow.EUNAUTHORIZED {
		w.Header().Set("WWW-Authenticate", s.mcp.Challenge(r, err))
	}
	return err
}

func (s *Server) handleMCPMetadata(w http.ResponseWriter, r *http.Request) error {
	if s.mcp == nil {
		return idflow.Errorf(idflow.ENOTFOUND, "no such route")
	}
	return s.mcp.ServeMetadata(w, r)
}
