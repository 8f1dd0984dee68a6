package sqlstore

import (
	"context"
	"encoding/json"
	"slices"

	"github.com/idflow/idflow"
)

const (
	sessionCols          = `id, user_id, title, COALESCE(app_id, ''), COALESCE(agent_id, ''), created_at, updated_at`
	ListSessionsSQL      = `SELECT ` + sessionCols + ` FROM sessions WHERE user_id = $1`
	ListSessionsByAppSQL = ListSessionsSQL + ` AND app_id = $2`
)

func scanSession(r Row) (idflow.ChatSession, error) {
	var s idflow.ChatSession
	err := r.Scan(&s.ID, &s.UserID, &s.Title, &s.AppID, &s.AgentID, &s.CreatedAt, &s.UpdatedAt)
	return s, err
}

func sessionKey(s idflow.ChatSession) Cursor { return createdKey(s.CreatedAt, s.ID) }

// requireRefs checks, inside the transaction, that a session's app and
// agent belong to its owner.
func requireRefs(ctx context.Context, tx Tx, owner, appID, agentID string) error {
	if err := requireOwned(ctx, tx, "apps", "app", owner, appID); err != nil {
		return err
	}
	return requireOwned(ctx, tx, "agents", "agent", owner, agentID)
}

func (s *Store) CreateSession(ctx context.Context, p idflow.Principal, c idflow.ChatSession) (idflow.ChatSession, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.ChatSession{}, err
	}
	now := s.clock.now()
	c = idflow.ChatSession{ID: idflow.NewID(idflow.PrefixSession), UserID: owner, Title: c.Title, AppID: c.AppID,
		AgentID: c.AgentID, CreatedAt: now, UpdatedAt: now}
	err = s.write(ctx, "create session", owner, func(tx Tx) error {
		if err := requireRefs(ctx, tx, owner, c.AppID, c.AgentID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO sessions (id, user_id, title, app_id, agent_id, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, c.ID, owner, c.Title, nullable(c.AppID), nullable(c.AgentID), now, now)
		return err
	})
	if err != nil {
		return idflow.ChatSession{}, err
	}
	return c, nil
}

func (s *Store) GetSession(ctx context.Context, p idflow.Principal, id string) (idflow.ChatSession, error) {
	return getOwned(ctx, s, p, "session", `SELECT `+sessionCols+` FROM sessions WHERE user_id = $1 AND id = $2`, scanSession, id)
}

func (s *Store) ListSessions(ctx context.Context, p idflow.Principal, f idflow.SessionFilter, page idflow.Page) (idflow.List[idflow.ChatSession], error) {
	base, args := ListSessionsSQL, []any(nil)
	if f.AppID != "" {
		base, args = ListSessionsByAppSQL, []any{f.AppID}
	}
	return listOwned(ctx, s, p, "list sessions", base, args, ByCreated, page, scanSession, sessionKey)
}

// UpdateSession applies patch; an AppID or AgentID set to "" clears the
// reference, and a non-empty one must name the caller's own app or agent.
func (s *Store) UpdateSession(ctx context.Context, p idflow.Principal, id string, patch idflow.SessionPatch) (idflow.ChatSession, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.ChatSession{}, err
	}
	var appID, agentID string
	if patch.AppID != nil {
		appID = *patch.AppID
	}
	if patch.AgentID != nil {
		agentID = *patch.AgentID
	}
	var c idflow.ChatSession
	err = s.write(ctx, "update session", owner, func(tx Tx) error {
		// The session first, so that another user's session answers
		// "session not found" whatever the patch names.
		if err := requireOwned(ctx, tx, "sessions", "session", owner, id); err != nil {
			return err
		}
		if err := requireRefs(ctx, tx, owner, appID, agentID); err != nil {
			return err
		}
		var err error
		c, err = getOne(ctx, tx, "session", `UPDATE sessions SET title = COALESCE($1, title),
			app_id = CASE WHEN $2 THEN $3 ELSE app_id END, agent_id = CASE WHEN $4 THEN $5 ELSE agent_id END,
			updated_at = $6
			WHERE user_id = $7 AND id = $8 RETURNING `+sessionCols, scanSession,
			optional(patch.Title), patch.AppID != nil, nullable(appID), patch.AgentID != nil, nullable(agentID),
			s.clock.now(), owner, id)
		return err
	})
	if err != nil {
		return idflow.ChatSession{}, err
	}
	return c, nil
}

// DeleteSession deletes the session and its messages.
func (s *Store) DeleteSession(ctx context.Context, p idflow.Principal, id string) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	return s.write(ctx, "delete session", owner, func(tx Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM messages WHERE user_id = $1 AND session_id = $2`, owner, id); err != nil {
			return err
		}
		return deleteOwned(ctx, tx, "sessions", "session", owner, id)
	})
}

const (
	// MessageCols are the columns of a message, in the order InsertMessages
	// writes them.
	MessageCols     = `id, user_id, session_id, role, content, tool_calls, tool_call_id, name, created_at, updated_at`
	ListMessagesSQL = `SELECT id, user_id, session_id, role, content, CAST(tool_calls AS TEXT), tool_call_id, name,
		created_at, updated_at FROM messages WHERE user_id = $1 AND session_id = $2`
	// recentMessagesSQL is the newest messages of a session, newest first.
	recentMessagesSQL = ListMessagesSQL + ` ORDER BY created_at DESC, id DESC LIMIT $3`
)

func scanMessage(r Row) (idflow.Message, error) {
	var m idflow.Message
	var calls *string
	err := r.Scan(&m.ID, &m.UserID, &m.SessionID, &m.Role, &m.Content, &calls, &m.ToolCallID, &m.Name, &m.CreatedAt, &m.UpdatedAt)
	if err == nil && calls != nil {
		err = json.Unmarshal([]byte(*calls), &m.ToolCalls)
	}
	return m, err
}

func messageKey(m idflow.Message) Cursor { return createdKey(m.CreatedAt, m.ID) }

// toolCallsJSON is a message's tool calls as stored: NULL when it has none.
func toolCallsJSON(calls []idflow.ToolCall) (*string, error) {
	if len(calls) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(calls)
	if err != nil {
		return nil, idflow.WrapError(idflow.EINVALID, "the arguments of a tool call are not JSON", err)
	}
	s := string(b)
	return &s, nil
}

// AddMessages appends msgs to the caller's session, in order, and touches
// the session's updated_at. The session's row is locked first (LockRow):
// concurrent appends to one session queue there, and a concurrent delete
// of the session cannot slip in between.
func (s *Store) AddMessages(ctx context.Context, p idflow.Principal, sessionID string, msgs ...idflow.Message) ([]idflow.Message, error) {
	owner, err := p.Owner()
	if err != nil {
		return nil, err
	}
	var out []idflow.Message
	err = s.write(ctx, "add messages", owner, func(tx Tx) error {
		if _, err := getOne(ctx, tx, "session", `SELECT id FROM sessions WHERE user_id = $1 AND id = $2`+s.b.SQL.LockRow,
			scanString, owner, sessionID); err != nil {
			return err
		}
		out = make([]idflow.Message, 0, len(msgs))
		if len(msgs) == 0 {
			return nil
		}
		calls := make([]*string, 0, len(msgs))
		for _, m := range msgs {
			now := s.clock.now()
			id := m.ID
			if !idflow.IsNewID(idflow.PrefixMessage, id) {
				id = idflow.NewID(idflow.PrefixMessage)
			}
			c, err := toolCallsJSON(m.ToolCalls)
			if err != nil {
				return err
			}
			out = append(out, idflow.Message{ID: id, UserID: owner, SessionID: sessionID, Role: m.Role, Content: m.Content,
				ToolCalls: m.ToolCalls, ToolCallID: m.ToolCallID, Name: m.Name, CreatedAt: now, UpdatedAt: now})
			calls = append(calls, c)
		}
		if err := s.b.InsertMessages(ctx, tx, out, calls); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE sessions SET updated_at = $1 WHERE user_id = $2 AND id = $3`,
			out[len(out)-1].CreatedAt, owner, sessionID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListMessages answers the session's history, oldest first; another user's
// session is not found.
func (s *Store) ListMessages(ctx context.Context, p idflow.Principal, sessionID string, page idflow.Page) (idflow.List[idflow.Message], error) {
	out := idflow.List[idflow.Message]{Items: []idflow.Message{}}
	owner, err := p.Owner()
	if err != nil {
		return out, err
	}
	err = s.read(ctx, "list messages", owner, func(tx Tx) error {
		if err := requireSession(ctx, tx, owner, sessionID); err != nil {
			return err
		}
		var err error
		out, err = list(ctx, tx, ListMessagesSQL, []any{owner, sessionID}, ByCreated, true, page, scanMessage, messageKey)
		return err
	})
	if err != nil {
		return idflow.List[idflow.Message]{Items: []idflow.Message{}}, err
	}
	return out, nil
}

// RecentMessages answers the session's newest limit messages, oldest
// first; another user's session is not found.
func (s *Store) RecentMessages(ctx context.Context, p idflow.Principal, sessionID string, limit int) ([]idflow.Message, error) {
	owner, err := p.Owner()
	if err != nil {
		return nil, err
	}
	if limit < 1 || limit > idflow.MaxRecentMessages {
		return nil, idflow.Errorf(idflow.EINVALID, "limit must be within 1..%d", idflow.MaxRecentMessages)
	}
	var out []idflow.Message
	err = s.read(ctx, "recent messages", owner, func(tx Tx) error {
		if err := requireSession(ctx, tx, owner, sessionID); err != nil {
			return err
		}
		var err error
		out, err = collect(ctx, tx, recentMessagesSQL, scanMessage, owner, sessionID, limit)
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.Reverse(out)
	return out, nil
}

// requireSession answers NotFound("session") unless owner has session id.
func requireSession(ctx context.Context, tx Tx, owner, id string) error {
	_, err := getOne(ctx, tx, "session", `SELECT id FROM sessions WHERE user_id = $1 AND id = $2`, scanString, owner, id)
	return err
}
