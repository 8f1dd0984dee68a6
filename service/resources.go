package service

import (
	"context"
	"encoding/json"

	"github.com/idflow/idflow"
)

// Apps.

func (s *Service) CreateApp(ctx context.Context, p idflow.Principal, name, description string) (idflow.App, error) {
	name, err := text("name", name, MaxNameLen, true)
	if err != nil {
		return idflow.App{}, err
	}
	if description, err = text("description", description, MaxDescriptionLen, false); err != nil {
		return idflow.App{}, err
	}
	return auditedID(s, ctx, p, "app.create", "app", func(a idflow.App) string { return a.ID }, func() (idflow.App, error) {
		return s.store.CreateApp(ctx, p, idflow.App{Name: name, Description: description})
	})
}

func (s *Service) GetApp(ctx context.Context, p idflow.Principal, id string) (idflow.App, error) {
	return deniedOnly(s, ctx, p, "app.get", "app/"+id, func() (idflow.App, error) { return s.store.GetApp(ctx, p, id) })
}

func (s *Service) ListApps(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.App], error) {
	return s.store.ListApps(ctx, p, page)
}

func (s *Service) UpdateApp(ctx context.Context, p idflow.Principal, id string, patch idflow.AppPatch) (idflow.App, error) {
	var err error
	if patch.Name, err = optionalText("name", patch.Name, MaxNameLen, true); err != nil {
		return idflow.App{}, err
	}
	if patch.Description, err = optionalText("description", patch.Description, MaxDescriptionLen, false); err != nil {
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
	var a idflow.Agent
	var err error
	if a.Name, err = text("name", in.Name, MaxNameLen, true); err != nil {
		return a, err
	}
	if a.Instructions, err = text("instructions", in.Instructions, MaxInstructionsLen, false); err != nil {
		return a, err
	}
	if a.Model, err = s.checkModel(in.Model); err != nil {
		return a, err
	}
	if a.Tools, err = validTools(in.Tools); err != nil {
		return a, err
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
	var err error
	if patch.Name, err = optionalText("name", patch.Name, MaxNameLen, true); err != nil {
		return idflow.Agent{}, err
	}
	if patch.Instructions, err = optionalText("instructions", patch.Instructions, MaxInstructionsLen, false); err != nil {
		return idflow.Agent{}, err
	}
	if patch.Model != nil {
		m, err := s.checkModel(*patch.Model)
		if err != nil {
			return idflow.Agent{}, err
		}
		patch.Model = &m
	}
	if patch.Tools != nil {
		t, err := validTools(*patch.Tools)
		if err != nil {
			return idflow.Agent{}, err
		}
		patch.Tools = &t
	}
	return audited(s, ctx, p, "agent.update", "agent/"+id, func() (idflow.Agent, error) { return s.store.UpdateAgent(ctx, p, id, patch) })
}

func (s *Service) DeleteAgent(ctx context.Context, p idflow.Principal, id string) error {
	_, err := audited(s, ctx, p, "agent.delete", "agent/"+id, func() (struct{}, error) { return struct{}{}, s.store.DeleteAgent(ctx, p, id) })
	return err
}

// Workflows.

func (s *Service) CreateWorkflow(ctx context.Context, p idflow.Principal, name string, def idflow.Definition) (idflow.Workflow, error) {
	name, err := text("name", name, MaxNameLen, true)
	if err != nil {
		return idflow.Workflow{}, err
	}
	if err := ValidateDefinition(def); err != nil {
		return idflow.Workflow{}, err
	}
	return auditedID(s, ctx, p, "workflow.create", "workflow", func(w idflow.Workflow) string { return w.ID }, func() (idflow.Workflow, error) {
		return s.store.CreateWorkflow(ctx, p, idflow.Workflow{Name: name, Definition: def})
	})
}

func (s *Service) GetWorkflow(ctx context.Context, p idflow.Principal, id string) (idflow.Workflow, error) {
	return deniedOnly(s, ctx, p, "workflow.get", "workflow/"+id, func() (idflow.Workflow, error) { return s.store.GetWorkflow(ctx, p, id) })
}

func (s *Service) ListWorkflows(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.Workflow], error) {
	return s.store.ListWorkflows(ctx, p, page)
}

func (s *Service) ReplaceWorkflow(ctx context.Context, p idflow.Principal, id, name string, def idflow.Definition) (idflow.Workflow, error) {
	name, err := text("name", name, MaxNameLen, true)
	if err != nil {
		return idflow.Workflow{}, err
	}
	if err := ValidateDefinition(def); err != nil {
		return idflow.Workflow{}, err
	}
	return audited(s, ctx, p, "workflow.replace", "workflow/"+id, func() (idflow.Workflow, error) {
		return s.store.ReplaceWorkflow(ctx, p, id, name, def)
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
	content, err := text("content", content, MaxFactLen, true)
	if err != nil {
		return idflow.Fact{}, err
	}
	return auditedID(s, ctx, p, "fact.create", "fact", func(f idflow.Fact) string { return f.ID }, func() (idflow.Fact, error) {
		return s.store.CreateFact(ctx, p, idflow.Fact{Content: content})
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
	query, err := text("query", query, MaxQueryLen, true)
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
// caller's own id read the caller's facts; the admin role may read another
// user's, and that read is audited; anyone else gets not found.
func (s *Service) UserFacts(ctx context.Context, p idflow.Principal, userID string, page idflow.Page) (idflow.List[idflow.Fact], error) {
	if userID == "me" || userID == p.UserID {
		return s.store.ListFacts(ctx, p, page)
	}
	if !s.IsAdmin(p) {
		err := idflow.NotFound("user")
		s.Audit(ctx, p, "facts.read_other", "user/"+userID, err)
		return idflow.List[idflow.Fact]{}, err
	}
	return audited(s, ctx, p, "admin.facts.read", "user/"+userID, func() (idflow.List[idflow.Fact], error) {
		return s.store.AdminListFacts(ctx, p, userID, page)
	})
}

// Audit, users, stats.

func (s *Service) ListAudit(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.AuditEvent], error) {
	return s.store.ListAudit(ctx, p, page)
}

func (s *Service) AdminListAudit(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.AuditEvent], error) {
	if !s.IsAdmin(p) {
		return idflow.List[idflow.AuditEvent]{}, idflow.Errorf(idflow.EFORBIDDEN, "the admin role is required")
	}
	return audited(s, ctx, p, "admin.audit.read", "audit", func() (idflow.List[idflow.AuditEvent], error) {
		return s.store.AdminListAudit(ctx, p, page)
	})
}

// VerifyAuditChain recomputes the audit hash chain for an admin; the check
// itself is audited.
func (s *Service) VerifyAuditChain(ctx context.Context, p idflow.Principal) (int, error) {
	if !s.IsAdmin(p) {
		return 0, idflow.Errorf(idflow.EFORBIDDEN, "the admin role is required")
	}
	n, err := s.store.VerifyAuditChain(ctx)
	s.Audit(ctx, p, "admin.audit.verify", "audit", nil)
	return n, err
}

func (s *Service) AdminListUsers(ctx context.Context, p idflow.Principal, page idflow.Page) (idflow.List[idflow.User], error) {
	if !s.IsAdmin(p) {
		return idflow.List[idflow.User]{}, idflow.Errorf(idflow.EFORBIDDEN, "the admin role is required")
	}
	return audited(s, ctx, p, "admin.users.read", "users", func() (idflow.List[idflow.User], error) {
		return s.store.AdminListUsers(ctx, p, page)
	})
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
