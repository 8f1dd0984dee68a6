package service

import (
	"context"
	"encoding/json"
	"time"

	"github.com/idflow/idflow"
)

// Apps.

func (s *Service) CreateApp(ctx context.Context, p idflow.Principal, name, description string) (idflow.App, error) {
	in := idflow.App{Name: name, Description: description}
	if err := in.Validate(); err != nil {
		return idflow.App{}, err
	}
	return auditedID(s, ctx, p, "app.create", "app", func(a idflow.App) string { return a.ID }, func() (idflow.App, error) {
		return s.store.CreateApp(ctx, p, in)
	})
}

func (s *Service) GetApp(ctx context.Context, p idflow.Principal, id string) (idflow.App, error) {
	return deniedOnly(s, ctx, p, "app.get", "app/"+id, func() (idflow.App, error) { return s.store.GetApp(ctx, p, id) })
}

func (s *Service) ListApps(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.App], error) {
	return s.store.ListApps(ctx, p, page)
}

func (s *Service) UpdateApp(ctx context.Context, p idflow.Principal, id string, patch idflow.AppPatch) (idflow.App, error) {
	if err := patch.Validate(); err != nil {
		return idflow.App{}, err
	}
	return audited(s, ctx, p, "app.update", "app/"+id, func() (idflow.App, error) { return s.store.UpdateApp(ctx, p, id, patch) })
}

func (s *Service) DeleteApp(ctx context.Context, p idflow.Principal, id string) error {
	_, err := audited(s, ctx, p, "app.delete", "app/"+id, func() (struct{}, error) { return struct{}{}, s.store.DeleteApp(ctx, p, id) })
	return err
}

// Agents.

// AgentInput is what a caller may set on an agent.
type AgentInput struct {
	Name         string
	Instructions string
	Model        string
	Tools        []string
}

func (s *Service) checkModel(model string) (string, error) {
	if model == "" {
		return s.cfg.DefaultModel, nil
	}
	for _, m := range s.cfg.Models {
		if m == model {
			return model, nil
		}
	}
	return "", idflow.Errorf(idflow.EINVALID, "unknown model %q; see GET /api/v1/llms", model)
}

func (s *Service) CreateAgent(ctx context.Context, p idflow.Principal, in AgentInput) (idflow.Agent, error) {
	a := idflow.Agent{Name: in.Name, Instructions: in.Instructions, Tools: in.Tools}
	if err := a.Validate(); err != nil {
		return idflow.Agent{}, err
	}
	var err error
	if a.Model, err = s.checkModel(in.Model); err != nil {
		return idflow.Agent{}, err
	}
	return auditedID(s, ctx, p, "agent.create", "agent", func(a idflow.Agent) string { return a.ID }, func() (idflow.Agent, error) {
		return s.store.CreateAgent(ctx, p, a)
	})
}

func (s *Service) GetAgent(ctx context.Context, p idflow.Principal, id string) (idflow.Agent, error) {
	return deniedOnly(s, ctx, p, "agent.get", "agent/"+id, func() (idflow.Agent, error) { return s.store.GetAgent(ctx, p, id) })
}

func (s *Service) ListAgents(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.Agent], error) {
	return s.store.ListAgents(ctx, p, page)
}

func (s *Service) UpdateAgent(ctx context.Context, p idflow.Principal, id string, patch idflow.AgentPatch) (idflow.Agent, error) {
	if err := patch.Validate(); err != nil {
		return idflow.Agent{}, err
	}
	if patch.Model != nil {
		m, err := s.checkModel(*patch.Model)
		if err != nil {
			return idflow.Agent{}, err
		}
		patch.Model = &m
	}
	return audited(s, ctx, p, "agent.update", "agent/"+id, func() (idflow.Agent, error) { return s.store.UpdateAgent(ctx, p, id, patch) })
}

func (s *Service) DeleteAgent(ctx context.Context, p idflow.Principal, id string) error {
	_, err := audited(s, ctx, p, "agent.delete", "agent/"+id, func() (struct{}, error) { return struct{}{}, s.store.DeleteAgent(ctx, p, id) })
	return err
}

// Workflows.

func (s *Service) CreateWorkflow(ctx context.Context, p idflow.Principal, name string, def idflow.Definition) (idflow.Workflow, error) {
	in := idflow.Workflow{Name: name, Definition: def}
	if err := in.Validate(); err != nil {
		return idflow.Workflow{}, err
	}
	return auditedID(s, ctx, p, "workflow.create", "workflow", func(w idflow.Workflow) string { return w.ID }, func() (idflow.Workflow, error) {
		return s.store.CreateWorkflow(ctx, p, in)
	})
}

func (s *Service) GetWorkflow(ctx context.Context, p idflow.Principal, id string) (idflow.Workflow, error) {
	return deniedOnly(s, ctx, p, "workflow.get", "workflow/"+id, func() (idflow.Workflow, error) { return s.store.GetWorkflow(ctx, p, id) })
}

func (s *Service) ListWorkflows(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.Workflow], error) {
	return s.store.ListWorkflows(ctx, p, page)
}

func (s *Service) ReplaceWorkflow(ctx context.Context, p idflow.Principal, id, name string, def idflow.Definition) (idflow.Workflow, error) {
	in := idflow.Workflow{Name: name, Definition: def}
	if err := in.Validate(); err != nil {
		return idflow.Workflow{}, err
	}
	return audited(s, ctx, p, "workflow.replace", "workflow/"+id, func() (idflow.Workflow, error) {
		return s.store.ReplaceWorkflow(ctx, p, id, in.Name, in.Definition)
	})
}

func (s *Service) DeleteWorkflow(ctx context.Context, p idflow.Principal, id string) error {
	_, err := audited(s, ctx, p, "workflow.delete", "workflow/"+id, func() (struct{}, error) { return struct{}{}, s.store.DeleteWorkflow(ctx, p, id) })
	return err
}

func (s *Service) PublishWorkflow(ctx context.Context, p idflow.Principal, id string) (idflow.Workflow, error) {
	return audited(s, ctx, p, "workflow.publish", "workflow/"+id, func() (idflow.Workflow, error) { return s.store.PublishWorkflow(ctx, p, id) })
}

// Facts and memory.

func (s *Service) CreateFact(ctx context.Context, p idflow.Principal, content string) (idflow.Fact, error) {
	in := idflow.Fact{Content: content}
	if err := in.Validate(); err != nil {
		return idflow.Fact{}, err
	}
	return auditedID(s, ctx, p, "fact.create", "fact", func(f idflow.Fact) string { return f.ID }, func() (idflow.Fact, error) {
		return s.store.CreateFact(ctx, p, in)
	})
}

func (s *Service) GetFact(ctx context.Context, p idflow.Principal, id string) (idflow.Fact, error) {
	return deniedOnly(s, ctx, p, "fact.get", "fact/"+id, func() (idflow.Fact, error) { return s.store.GetFact(ctx, p, id) })
}

func (s *Service) ListFacts(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.Fact], error) {
	return s.store.ListFacts(ctx, p, page)
}

func (s *Service) DeleteFact(ctx context.Context, p idflow.Principal, id string) error {
	_, err := audited(s, ctx, p, "fact.delete", "fact/"+id, func() (struct{}, error) { return struct{}{}, s.store.DeleteFact(ctx, p, id) })
	return err
}

// SearchMemory ranks the caller's facts; nobody else's are ever considered.
func (s *Service) SearchMemory(ctx context.Context, p idflow.Principal, query string, limit int) ([]idflow.ScoredFact, error) {
	query, err := idflow.CheckText("query", query, idflow.MaxQueryLen, true)
	if err != nil {
		return nil, err
	}
	if limit < 0 || limit > 50 {
		return nil, idflow.Errorf(idflow.EINVALID, "limit must be within 0..50")
	}
	if limit == 0 {
		limit = 10
	}
	items, err := s.store.SearchFacts(ctx, p, query, limit)
	if items == nil && err == nil {
		items = []idflow.ScoredFact{}
	}
	return items, err
}

// UserFacts answers the seed-compatible /users/{user_id}/facts: "me" or the
// caller's own id read the caller's facts; an admin may read the facts of a
// user of their own tenant (a platform admin: of any tenant), and that read
// is audited; anyone else — and an admin asking for a user outside their
// scope, or never seen — gets the same not found, audited as a denial.
func (s *Service) UserFacts(ctx context.Context, p idflow.Principal, userID string, page idflow.Page) (idflow.List[idflow.Fact], error) {
	if userID == "me" || userID == p.UserID {
		return s.store.ListFacts(ctx, p, page)
	}
	scope, err := s.AdminScope(p)
	if err != nil {
		err := idflow.NotFound("user")
		s.Audit(ctx, p, "facts.read_other", "user/"+userID, err)
		return idflow.List[idflow.Fact]{}, err
	}
	out, err := s.store.AdminListFacts(ctx, p, scope, userID, page)
	s.auditDetail(ctx, p, adminAction(scope, "facts.read"), "user/"+userID, scope.String(), err)
	return out, err
}

// adminAction names an admin action for the audit trail: "admin.<what>"
// within the admin's own tenant, "platform_admin.<what>" when a platform
// admin acts across tenants, so the trail says which reach was used (the
// detail names the scope).
func adminAction(scope idflow.AdminScope, what string) string {
	if scope.AllTenants() {
		return "platform_admin." + what
	}
	return "admin." + what
}

// Audit, users, stats.

func (s *Service) ListAudit(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.AuditEvent], error) {
	return s.store.ListAudit(ctx, p, page)
}

// AdminListAudit answers the audit events of the admin's scope; the read is
// itself audited.
func (s *Service) AdminListAudit(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.AuditEvent], error) {
	scope, err := s.AdminScope(p)
	if err != nil {
		return idflow.List[idflow.AuditEvent]{}, err
	}
	out, err := s.store.AdminListAudit(ctx, p, scope, page)
	s.auditDetail(ctx, p, adminAction(scope, "audit.read"), "audit", scope.String(), err)
	return out, err
}

// AuditVerification is the answer of VerifyAuditChain.
type AuditVerification struct {
	Checked    int  // events of the admin's scope whose hash was recomputed
	AllTenants bool // the scope was every tenant
}

// VerifyAuditChain checks the audit hash chain for an admin: the links of
// the whole chain, and the hashes of the events of the admin's scope. A
// broken chain is the error; the check itself is audited.
func (s *Service) VerifyAuditChain(ctx context.Context, p idflow.Principal) (AuditVerification, error) {
	scope, err := s.AdminScope(p)
	if err != nil {
		return AuditVerification{}, err
	}
	n, err := s.store.VerifyAuditChain(ctx, p, scope)
	finding := "chain intact"
	if err != nil {
		finding = idflow.ErrorMessage(err)
	}
	s.auditDetail(ctx, p, adminAction(scope, "audit.verify"), "audit", scope.String()+": "+finding, nil)
	return AuditVerification{Checked: n, AllTenants: scope.AllTenants()}, err
}

// AdminListUsers lists the users of the admin's scope; the read is audited.
func (s *Service) AdminListUsers(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.User], error) {
	scope, err := s.AdminScope(p)
	if err != nil {
		return idflow.List[idflow.User]{}, err
	}
	out, err := s.store.AdminListUsers(ctx, p, scope, page)
	s.auditDetail(ctx, p, adminAction(scope, "users.read"), "users", scope.String(), err)
	return out, err
}

// AdminListUsage answers the model usage of the admin's scope: every
// user's totals by day and model, or one user's (userID). Audited.
func (s *Service) AdminListUsage(ctx context.Context, p idflow.Principal, userID string, from, to time.Time) ([]idflow.UsageDay, error) {
	scope, err := s.AdminScope(p)
	if err != nil {
		return nil, err
	}
	resource := "usage"
	if userID != "" {
		resource = "user/" + userID + "/usage"
	}
	out, err := s.store.AdminListUsage(ctx, p, scope, userID, from, to)
	s.auditDetail(ctx, p, adminAction(scope, "usage.read"), resource, scope.String(), err)
	return out, err
}

// Stats are aggregate counts for app-only monitoring callers.
func (s *Service) Stats(ctx context.Context, p idflow.Principal) (idflow.Stats, error) {
	if p.Kind != idflow.KindApp {
		return idflow.Stats{}, idflow.Errorf(idflow.EFORBIDDEN, "only app-only callers read stats")
	}
	return s.store.Stats(ctx)
}

// Models lists the chat models callers may name.
func (s *Service) Models() []string { return s.cfg.Models }

func marshal(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// Runs (reads; starting and cancelling belong to package runner).

func (s *Service) GetRun(ctx context.Context, p idflow.Principal, id string) (idflow.Run, error) {
	return deniedOnly(s, ctx, p, "run.get", "run/"+id, func() (idflow.Run, error) { return s.store.GetRun(ctx, p, id) })
}

func (s *Service) ListRuns(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.Run], error) {
	return s.store.ListRuns(ctx, p, page)
}

func (s *Service) ListEvents(ctx context.Context, p idflow.Principal, runID string, afterSeq int64, limit int) ([]idflow.Event, error) {
	return deniedOnly(s, ctx, p, "run.events", "run/"+runID, func() ([]idflow.Event, error) {
		return s.store.ListEvents(ctx, p, runID, afterSeq, limit)
	})
}
