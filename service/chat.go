package service

import (
	"context"
	"encoding/json"

	"github.com/idflow/idflow"
)

// SessionInput is what a caller may set on a chat session.
type SessionInput struct {
	Title   string
	AppID   string
	AgentID string
}

func (s *Service) CreateSession(ctx context.Context, p idflow.Principal, in SessionInput) (idflow.ChatSession, error) {
	c := idflow.ChatSession{Title: in.Title, AppID: in.AppID, AgentID: in.AgentID}
	if err := c.Validate(); err != nil {
		return idflow.ChatSession{}, err
	}
	if c.Title == "" {
		c.Title = "New chat"
	}
	return auditedID(s, ctx, p, "session.create", "session", func(c idflow.ChatSession) string { return c.ID }, func() (idflow.ChatSession, error) {
		return s.store.CreateSession(ctx, p, c)
	})
}

// GetSession reads through the scoped cache: its key is derived from p, so
// one user's entry can never answer another's request.
func (s *Service) GetSession(ctx context.Context, p idflow.Principal, id string) (idflow.ChatSession, error) {
	if s.cache != nil {
		if b, ok, err := s.cache.Get(ctx, p, "session", id); err == nil && ok {
			var c idflow.ChatSession
			if json.Unmarshal(b, &c) == nil && c.UserID == p.UserID {
				return c, nil
			}
		} else if err != nil {
			s.log.WarnContext(ctx, "cache get", "err", err)
		}
	}
	c, err := deniedOnly(s, ctx, p, "session.get", "session/"+id, func() (idflow.ChatSession, error) {
		return s.store.GetSession(ctx, p, id)
	})
	if err == nil && s.cache != nil {
		if err := s.cache.Set(ctx, p, "session", id, marshal(c)); err != nil {
			s.log.WarnContext(ctx, "cache set", "err", err)
		}
	}
	return c, err
}

func (s *Service) forgetSession(ctx context.Context, p idflow.Principal, id string) {
	if s.cache == nil {
		return
	}
	if err := s.cache.Delete(ctx, p, "session", id); err != nil {
		s.log.WarnContext(ctx, "cache delete", "err", err)
	}
}

func (s *Service) ListSessions(ctx context.Context, p idflow.Principal, f idflow.SessionFilter, page idflow.Page) (idflow.List[idflow.ChatSession], error) {
	return s.store.ListSessions(ctx, p, f, page)
}

func (s *Service) UpdateSession(ctx context.Context, p idflow.Principal, id string, patch idflow.SessionPatch) (idflow.ChatSession, error) {
	if err := patch.Validate(); err != nil {
		return idflow.ChatSession{}, err
	}
	defer s.forgetSession(ctx, p, id)
	return audited(s, ctx, p, "session.update", "session/"+id, func() (idflow.ChatSession, error) {
		return s.store.UpdateSession(ctx, p, id, patch)
	})
}

func (s *Service) DeleteSession(ctx context.Context, p idflow.Principal, id string) error {
	defer s.forgetSession(ctx, p, id)
	_, err := audited(s, ctx, p, "session.delete", "session/"+id, func() (struct{}, error) {
		return struct{}{}, s.store.DeleteSession(ctx, p, id)
	})
	return err
}

func (s *Service) ListMessages(ctx context.Context, p idflow.Principal, sessionID string, page idflow.Page) (idflow.List[idflow.Message], error) {
	return deniedOnly(s, ctx, p, "session.messages", "session/"+sessionID, func() (idflow.List[idflow.Message], error) {
		return s.store.ListMessages(ctx, p, sessionID, page)
	})
}

// Complete asks the model one question as p (a workflow's prompt step).
// onDelta, when not nil, receives the answer's text as the model streams it.
func (s *Service) Complete(ctx context.Context, p idflow.Principal, model, prompt string, onDelta func(string) error) (string, error) {
	if model == "" {
		model = s.cfg.DefaultModel
	}
	resp, err := s.model.Chat(ctx, p, idflow.ChatRequest{Model: model, Messages: []idflow.ChatMessage{{Role: "user", Content: prompt}}}, onDelta)
	return resp.Content, err
}
