package idflow

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"strings"
)

// Every store method takes the Principal whose data it touches and scopes its
// query by p.Owner(). Methods that read across users start with Admin, are
// only reached through an audited, role-checked path, and take the admin's
// AdminScope as well: their SQL reads the scope's tenant only (every tenant
// for a platform admin), and they refuse a zero scope or one built for
// another Principal.

type AppStore interface {
	CreateApp(ctx context.Context, p Principal, a App) (App, error)
	GetApp(ctx context.Context, p Principal, id string) (App, error)
	ListApps(ctx context.Context, p Principal, page Page) (List[App], error)
	UpdateApp(ctx context.Context, p Principal, id string, patch AppPatch) (App, error)
	DeleteApp(ctx context.Context, p Principal, id string) error
}

type SessionStore interface {
	// CreateSession refuses (as not found) an AppID or AgentID the caller does not own.
	CreateSession(ctx context.Context, p Principal, s ChatSession) (ChatSession, error)
	GetSession(ctx context.Context, p Principal, id string) (ChatSession, error)
	ListSessions(ctx context.Context, p Principal, f SessionFilter, page Page) (List[ChatSession], error)
	UpdateSession(ctx context.Context, p Principal, id string, patch SessionPatch) (ChatSession, error)
	DeleteSession(ctx context.Context, p Principal, id string) error
	// AddMessages appends messages to one of the caller's sessions, in
	// order, in one transaction. A message keeps an ID the caller made with
	// NewID(PrefixMessage) (an agent turn shows it before storing); any
	// other ID is replaced by a new one.
	AddMessages(ctx context.Context, p Principal, sessionID string, msgs ...Message) ([]Message, error)
	// ListMessages answers a session's history, oldest first.
	ListMessages(ctx context.Context, p Principal, sessionID string, page Page) (List[Message], error)
	// RecentMessages answers a session's newest limit messages (1 to
	// MaxRecentMessages), oldest first: what a model is shown of it.
	RecentMessages(ctx context.Context, p Principal, sessionID string, limit int) ([]Message, error)
}

type AgentStore interface {
	CreateAgent(ctx context.Context, p Principal, a Agent) (Agent, error)
	GetAgent(ctx context.Context, p Principal, id string) (Agent, error)
	ListAgents(ctx context.Context, p Principal, page Page) (List[Agent], error)
	UpdateAgent(ctx context.Context, p Principal, id string, patch AgentPatch) (Agent, error)
	DeleteAgent(ctx context.Context, p Principal, id string) error
}

type WorkflowStore interface {
	CreateWorkflow(ctx context.Context, p Principal, w Workflow) (Workflow, error)
	GetWorkflow(ctx context.Context, p Principal, id string) (Workflow, error)
	ListWorkflows(ctx context.Context, p Principal, page Page) (List[Workflow], error)
	// ReplaceWorkflow replaces the draft's name and definition.
	ReplaceWorkflow(ctx context.Context, p Principal, id string, name string, def Definition) (Workflow, error)
	DeleteWorkflow(ctx context.Context, p Principal, id string) error
	// PublishWorkflow freezes the current draft as the next version.
	PublishWorkflow(ctx context.Context, p Principal, id string) (Workflow, error)
	GetWorkflowVersion(ctx context.Context, p Principal, id string, version int) (Definition, error)
}

type DocumentStore interface {
	// CreateDocument records a document and its chunks as facts, atomically.
	CreateDocument(ctx context.Context, p Principal, d Document, chunks []string) (Document, error)
	GetDocument(ctx context.Context, p Principal, id string) (Document, error)
	ListDocuments(ctx context.Context, p Principal, page Page) (List[Document], error)
	// DeleteDocument removes the document and the facts made from it.
	DeleteDocument(ctx context.Context, p Principal, id string) error
}

type FactStore interface {
	CreateFact(ctx context.Context, p Principal, f Fact) (Fact, error)
	GetFact(ctx context.Context, p Principal, id string) (Fact, error)
	ListFacts(ctx context.Context, p Principal, page Page) (List[Fact], error)
	DeleteFact(ctx context.Context, p Principal, id string) error
	// SearchFacts ranks the caller's facts against query, best first.
	SearchFacts(ctx context.Context, p Principal, query string, limit int) ([]ScoredFact, error)
	// AdminListFacts reads another user's facts, audited by the caller. The
	// user must have been seen (TouchUser) in the scope's tenant: a user of
	// another tenant, or one never seen, is NotFound("user").
	AdminListFacts(ctx context.Context, admin Principal, scope AdminScope, userID string, page Page) (List[Fact], error)
}

type UserStore interface {
	// TouchUser records that p was seen.
	TouchUser(ctx context.Context, p Principal) error
	// AdminListUsers lists the users seen in the scope's tenant, most
	// recently first seen first.
	AdminListUsers(ctx context.Context, admin Principal, scope AdminScope, page Page) (List[User], error)
}

type AuditStore interface {
	// RecordAudit appends e to the hash chain. e.UserID may be empty for a
	// denial before anyone was authenticated.
	RecordAudit(ctx context.Context, e AuditEvent) (AuditEvent, error)
	ListAudit(ctx context.Context, p Principal, page Page) (List[AuditEvent], error)
	// AdminListAudit answers the events whose actor's tenant is the scope's
	// (every event for a platform admin), newest first.
	AdminListAudit(ctx context.Context, admin Principal, scope AdminScope, page Page) (List[AuditEvent], error)
	// VerifyAuditChain checks the links of the whole chain and recomputes
	// the hash of every event of the scope (AuditChainCheck); it returns the
	// number of the scope's events verified, or an error naming the first
	// broken link.
	VerifyAuditChain(ctx context.Context, admin Principal, scope AdminScope) (int, error)
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

type StatsStore interface {
	Stats(ctx context.Context) (Stats, error)
}

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
	Ping(ctx context.Context) error
	Close() error
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewID returns prefix followed by 128 random bits.
func NewID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return prefix + strings.ToLower(idEncoding.EncodeToString(b[:]))
}

// IsNewID reports whether id has the form NewID(prefix) gives it.
func IsNewID(prefix, id string) bool {
	rest, ok := strings.CutPrefix(id, prefix)
	if !ok || len(rest) != 26 {
		return false
	}
	return strings.IndexFunc(rest, func(c rune) bool { return !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') }) < 0
}
