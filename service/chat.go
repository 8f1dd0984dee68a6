package service

import (
	"context"
	"encoding/json"

	"github.com/idflow/idflow"
)

// historyTurns is how much of a session the model sees.
const historyTurns = 20

// SessionInput is what a caller may set on a chat session.
type SessionInput struct {
	Title   string
	AppID   string
	AgentID string
}

func (s *Service) CreateSession(ctx context.Context, p idflow.Principal, in SessionInput) (idflow.ChatSession, error) {
	title, err := text("title", in.Title, MaxNameLen, false)
	if err != nil {
		return idflow.ChatSession{}, err
	}
	if title == "" {
		title = "New chat"
	}
	return auditedID(s, ctx, p, "session.create", "session", func(c idflow.ChatSession) string { return c.ID }, func() (idflow.ChatSession, error) {
		return s.store.CreateSession(ctx, p, idflow.ChatSession{Title: title, AppID: in.AppID, AgentID: in.AgentID})
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
	var err error
	if patch.Title, err = optionalText("title", patch.Title, MaxNameLen, true); err != nil {
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

// SendMessage asks the session's agent model for a reply, then stores the
// message and the reply together: a failed model call stores nothing, so the
// caller can retry without leaving half a turn behind.
func (s *Service) SendMessage(ctx context.Context, p idflow.Principal, sessionID, content string) (idflow.Message, idflow.Message, error) {
	content, err := text("content", content, MaxMessageLen, true)
	if err != nil {
		return idflow.Message{}, idflow.Message{}, err
	}
	sess, err := s.GetSession(ctx, p, sessionID)
	if err != nil {
		return idflow.Message{}, idflow.Message{}, err
	}
	model, instructions := s.cfg.DefaultModel, ""
	if sess.AgentID != "" {
		if ag, err := s.store.GetAgent(ctx, p, sess.AgentID); err == nil {
			model, instructions = ag.Model, ag.Instructions
		}
	}
	var turns []idflow.ChatMessage
	if instructions != "" {
		turns = append(turns, idflow.ChatMessage{Role: "system", Content: instructions})
	}
	hist, err := s.store.ListMessages(ctx, p, sessionID, idflow.Page{Limit: idflow.MaxPageLimit})
	if err != nil {
		return idflow.Message{}, idflow.Message{}, err
	}
	items := hist.Items
	if len(items) > historyTurns {
		items = items[len(items)-historyTurns:]
	}
	for _, m := range items {
		turns = append(turns, idflow.ChatMessage{Role: m.Role, Content: m.Content})
	}
	turns = append(turns, idflow.ChatMessage{Role: "user", Content: content})
	resp, err := s.model.Chat(ctx, p, idflow.ChatRequest{Model: model, Messages: turns}, nil)
	reply := resp.Content
	if err != nil {
		return idflow.Message{}, idflow.Message{}, err
	}
	defer s.forgetSession(ctx, p, sessionID)
	msgs, err := audited(s, ctx, p, "session.message", "session/"+sessionID, func() ([]idflow.Message, error) {
		return s.store.AddMessages(ctx, p, sessionID,
			idflow.Message{Role: "user", Content: content},
			idflow.Message{Role: "assistant", Content: reply})
	})
	if err != nil {
		return idflow.Message{}, idflow.Message{}, err
	}
	return msgs[0], msgs[1], nil
}

// Complete asks the model one question as p (a workflow's prompt step).
func (s *Service) Complete(ctx context.Context, p idflow.Principal, model, prompt string) (string, error) {
	if model == "" {
		model = s.cfg.DefaultModel
	}
	resp, err := s.model.Chat(ctx, p, idflow.ChatRequest{Model: model, Messages: []idflow.ChatMessage{{Role: "user", Content: prompt}}}, nil)
	return resp.Content, err
}
