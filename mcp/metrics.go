package mcp

// OpenSessions reports how many MCP sessions are open on this process (for
// the idflow_mcp_sessions_open gauge).
func (s *Server) OpenSessions() int {
	n := 0
	for range s.sdk.Sessions() {
		n++
	}
	return n
}
