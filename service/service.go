// Package service holds idflow's use cases — the one implementation of each
// action, shared by the HTTP API, the MCP tools and the workflow runner. It
// validates input, calls the owner-scoped store, and audits every write and
// every denial.
package service

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/authz"
	"github.com/idflow/idflow/budget"
	"github.com/idflow/idflow/cache"
	"github.com/idflow/idflow/llm"
)

// Config tunes the service.
type Config struct {
	AdminRole         string // administers the admin's own tenant
	PlatformAdminRole string // administers every tenant; "" = nobody
	DefaultModel      string // model name used when an agent names none
	Models            []string

	// Agent turns (docs/AGENTS.md). Zero takes the default; a negative
	// AgentMemoryK or AgentHistoryTokens gives the model no memory or no
	// history.
	AgentMaxSteps      int           // model calls per turn (default 8)
	AgentMemoryK       int           // the caller's facts per turn (default 5, at most 50)
	AgentHistoryTokens int           // estimated tokens of history per turn (default 8000)
	AgentTurnTimeout   time.Duration // longest a turn may take (default 5m)

	Now func() time.Time // the clock (tests); nil is time.Now

	// ErasureKey keys the hash that replaces an erased user's id in the
	// audit chain (erase.go); without one, erasure is refused.
	ErasureKey []byte
}

// Service implements the use cases.
type Service struct {
	cfg    Config
	store  idflow.Store
	blobs  idflow.BlobStore
	cache  *cache.Scoped
	model  idflow.ChatModel
	tools  idflow.ToolCatalog // SetToolCatalog; nil: turns offer no tools
	policy *authz.Policy
	log    *slog.Logger

	budgets    *budget.Budgets // nil: no model budgets (budget.go)
	tokensMu   sync.Mutex
	tokensUsed map[string]time.Time // token id → when its use was last recorded here (tokens.go)
	// The identity lifecycle (directory.go): SetLifecycle, OnDeactivate.
	lifecycle     Lifecycle
	scimClients   []string
	deactivations []Deactivation
}

// Deps are the service's collaborators.
type Deps struct {
	Store  idflow.Store
	Blobs  idflow.BlobStore
	Cache  *cache.Scoped
	Model  idflow.ChatModel
	Policy *authz.Policy
	Log    *slog.Logger
	// Budgets are the model token budgets a turn is checked against
	// before it begins (the model itself is wrapped in budget.Model);
	// nil: none.
	Budgets *budget.Budgets
}

// New returns a Service.
func New(cfg Config, d Deps) *Service {
	if cfg.AdminRole == "" {
		cfg.AdminRole = "admin"
	}
	if cfg.DefaultModel == "" {
		cfg.DefaultModel = llm.EchoModelName
	}
	if len(cfg.Models) == 0 {
		cfg.Models = []string{cfg.DefaultModel}
	}
	if cfg.AgentMaxSteps <= 0 {
		cfg.AgentMaxSteps = DefaultAgentMaxSteps
	}
	if cfg.AgentMemoryK == 0 {
		cfg.AgentMemoryK = DefaultAgentMemoryK
	}
	cfg.AgentMemoryK = min(cfg.AgentMemoryK, MaxAgentMemoryK)
	if cfg.AgentHistoryTokens == 0 {
		cfg.AgentHistoryTokens = DefaultAgentHistoryTokens
	}
	if cfg.AgentTurnTimeout <= 0 {
		cfg.AgentTurnTimeout = DefaultAgentTurnTimeout
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Policy == nil {
		d.Policy, _ = authz.Load("")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg, store: d.Store, blobs: d.Blobs, cache: d.Cache, model: d.Model, policy: d.Policy, log: d.Log,
		budgets: d.Budgets, tokensUsed: map[string]time.Time{}}
}

func (s *Service) now() time.Time { return s.cfg.Now() }

// Store exposes the store for components that add their own use cases on
// top (the runner).
func (s *Service) Store() idflow.Store { return s.store }

// Policy is the feature policy.
func (s *Service) Policy() *authz.Policy { return s.policy }

// AdminScope answers whose data p administers: its own tenant with the
// admin role, every tenant with the platform admin role (idflow.AdminScope);
// EFORBIDDEN without either.
func (s *Service) AdminScope(p idflow.Principal) (idflow.AdminScope, error) {
	if p.AuthMethod == idflow.AuthPersonalToken {
		// A script's token never administers, whatever its owner's roles.
		return idflow.AdminScope{}, idflow.Errorf(idflow.EFORBIDDEN, "personal access tokens cannot use admin routes")
	}
	return idflow.NewAdminScope(p, idflow.AdminRoles{Tenant: s.cfg.AdminRole, Platform: s.cfg.PlatformAdminRole})
}

// IsAdmin reports whether p holds the admin or the platform admin role.
func (s *Service) IsAdmin(p idflow.Principal) bool {
	_, err := s.AdminScope(p)
	return err == nil
}

// Audit records one action of p. err decides the outcome: nil is success,
// a not-found (which includes another user's object) or forbidden is a
// denial, anything else a failure.
func (s *Service) Audit(ctx context.Context, p idflow.Principal, action, resource string, err error) {
	s.auditDetail(ctx, p, action, resource, "", err)
}

// auditDetail is Audit with a detail that is recorded whatever the outcome;
// a denial or failure appends its message to it.
func (s *Service) auditDetail(ctx context.Context, p idflow.Principal, action, resource, detail string, err error) {
	outcome := idflow.OutcomeSuccess
	if err != nil {
		outcome = idflow.OutcomeFailure
		switch idflow.ErrorCode(err) {
		case idflow.ENOTFOUND, idflow.EFORBIDDEN, idflow.EUNAUTHORIZED:
			outcome = idflow.OutcomeDenied
		case idflow.EINVALID, idflow.ETOOLARGE:
			return // a malformed request changed nothing and touched nobody's data
		}
		if detail != "" {
			detail += ": "
		}
		detail += idflow.ErrorMessage(err)
	}
	info := idflow.RequestInfoFrom(ctx)
	_, aerr := s.store.RecordAudit(context.WithoutCancel(ctx), idflow.AuditEvent{
		UserID: p.UserID, TenantID: p.TenantID, Action: action, Resource: resource,
		Outcome: outcome, RequestID: info.RequestID, Peer: info.Peer, Detail: detail,
	})
	if aerr != nil {
		s.log.ErrorContext(ctx, "audit write failed", "action", action, "err", aerr)
	}
}

// audited runs a write (or a by-id read) and audits it.
func audited[T any](s *Service, ctx context.Context, p idflow.Principal, action, resource string, fn func() (T, error)) (T, error) {
	v, err := fn()
	s.Audit(ctx, p, action, resource, err)
	return v, err
}

// auditedID is audited for an action whose resource id is only known after it ran.
func auditedID[T any](s *Service, ctx context.Context, p idflow.Principal, action, kind string, id func(T) string, fn func() (T, error)) (T, error) {
	v, err := fn()
	resource := kind
	if err == nil {
		resource = kind + "/" + id(v)
	}
	s.Audit(ctx, p, action, resource, err)
	return v, err
}

// deniedOnly audits a read only when it was refused: successful reads are
// not written to the chain, denials always are.
func deniedOnly[T any](s *Service, ctx context.Context, p idflow.Principal, action, resource string, fn func() (T, error)) (T, error) {
	v, err := fn()
	if err != nil && isDenial(err) {
		s.Audit(ctx, p, action, resource, err)
	}
	return v, err
}

func isDenial(err error) bool {
	switch idflow.ErrorCode(err) {
	case idflow.ENOTFOUND, idflow.EFORBIDDEN:
		return true
	}
	return false
}
