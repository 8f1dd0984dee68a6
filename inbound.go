package idflow

import "context"

// The inbound token is the bearer token a request was authenticated with.
// It exists for one purpose: a token exchange (RFC 8693, Entra
// on-behalf-of), where it is the subject_token sent to the token endpoint of
// a downstream provider. It is never logged, never stored, never put in a
// job, and never sent to a downstream API (docs/SECURITY.md).

type inboundKey struct{}

// inboundToken is bound to the user it was verified for, so that a context
// carrying one user's token cannot serve a call made as another user.
type inboundToken struct {
	userID string
	raw    string
}

// WithInboundToken returns ctx carrying raw, the bearer token p was verified
// from. Only the authentication layer's callers (the HTTP and MCP servers)
// set it, for bearer-authenticated requests only.
func WithInboundToken(ctx context.Context, p Principal, raw string) context.Context {
	if raw == "" || p.UserID == "" || p.Kind != KindUser {
		return ctx
	}
	return context.WithValue(ctx, inboundKey{}, inboundToken{userID: p.UserID, raw: raw})
}

// InboundToken returns the bearer token of the current request if it was
// verified for p; a background run, a session-cookie request or a context
// of another user has none.
func InboundToken(ctx context.Context, p Principal) (string, bool) {
	t, ok := ctx.Value(inboundKey{}).(inboundToken)
	if !ok || p.UserID == "" || p.Kind != KindUser || t.userID != p.UserID {
		return "", false
	}
	return t.raw, true
}
