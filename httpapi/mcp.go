package httpapi

import (
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

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

func handleMCP(m MCP) handler {
	return func(w http.ResponseWriter, r *http.Request, p idflow.Principal) error {
		if m == nil {
			return idflow.Errorf(idflow.ENOTFOUND, "no such route")
		}
		// The MCP SDK refuses any other type itself, but in plain text: say it
		// as problem+json, like every other route.
		if r.Method == http.MethodPost {
			if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
				return unsupportedMediaType("application/json")
			}
		}
		err := m.ServeMCP(w, r, p)
		if err != nil && idflow.ErrorCode(err) == idflow.EUNAUTHORIZED {
			w.Header().Set("WWW-Authenticate", m.Challenge(r, err))
		}
		return err
	}
}

func handleMCPMetadata(m MCP) openHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if m == nil {
			return idflow.Errorf(idflow.ENOTFOUND, "no such route")
		}
		return m.ServeMetadata(w, r)
	}
}

// checkMCPOrigin refuses a request to /mcp whose Origin is neither the
// public URL's nor one of IDFLOW_CORS_ORIGINS: the transport spec's MUST
// against DNS rebinding (a page whose host name was rebound to idflow's
// address reaches it with its own Origin). A request without Origin (any
// non-browser client) passes; "null", a repeated header or a malformed one
// do not. It runs before authentication, so the answer is 403 whatever the
// credentials. Go's http.CrossOriginProtection does not fit: it lets an
// Origin through that matches the Host header, and a rebound page's do.
func (s *Server) checkMCPOrigin(r *http.Request) error {
	values := r.Header.Values("Origin")
	if len(values) == 0 {
		return nil
	}
	if len(values) == 1 {
		if origin, ok := canonicalOrigin(values[0], true); ok {
			if pub, ok := canonicalOrigin(s.cfg.PublicURL, false); ok && origin == pub {
				return nil
			}
			for _, allowed := range s.cfg.CORSOrigins {
				if o, ok := canonicalOrigin(allowed, false); ok && origin == o {
					return nil
				}
			}
		}
	}
	s.log.WarnContext(r.Context(), "mcp request from a foreign Origin refused", "origin", strings.Join(values, ", "),
		"peer", r.RemoteAddr, "request_id", requestID(r.Context()))
	return idflow.Errorf(idflow.EFORBIDDEN, "this Origin may not use the MCP endpoint")
}

// canonicalOrigin returns the ASCII serialization of the origin of raw
// (RFC 6454): scheme and host in lower case, the scheme's default port
// dropped. strict accepts only an Origin header's form: nothing after the
// host. Only http and https origins exist here; "null" has none.
func canonicalOrigin(raw string, strict bool) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Opaque != "" {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", false
	}
	if strict && (u.Path != "" || u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(raw, "?#")) {
		return "", false
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if port != "" {
		return scheme + "://" + net.JoinHostPort(host, port), true
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return scheme + "://" + host, true
}
