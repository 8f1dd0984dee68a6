package idflow

import "context"

// Every store method takes the Principal whose data it touches and scopes its
// query by p.Owner(). Methods that read across users start with Admin, are
// only reached through an audited, role-checked path, and take the admin's
// AdminScope as well: their SQL reads the scope's tenant only (every tenant
// for a platform admin), and they refuse a zero scope or one built for
// another Principal.

// Store is everything a backend (sqlite, postgres) implements, every part of
// it, so nothing that holds a Store asks whether it can keep connections or
// browser sessions; storetest is the conformance suite each must pass.
type Store interface {
	AppStore
	SessionStore
	AgentStore
	WorkflowStore
	DocumentStore
	FactStore
	UserStore
	AuditStore
	StatsStore
	RunStore
	UsageStore
	ConnectionStore
	BrowserSessionStore
	OAuthStore
	PersonalTokenStore
	UserEraser
	DirectoryStore
	Ping(ctx context.Context) error
	Close() error
}

// Stats are aggregate counts for the internal, app-only route; no user data.
type Stats struct {
	Users     int64 `json:"users"`
	Sessions  int64 `json:"sessions"`
	Messages  int64 `json:"messages"`
	Workflows int64 `json:"workflows"`
	Runs      int64 `json:"runs"`
	Documents int64 `json:"documents"`
	Facts     int64 `json:"facts"`
}

// StatsStore counts rows for the internal, app-only route.
type StatsStore interface {
	Stats(ctx context.Context) (Stats, error)
}
