package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"slices"

	"github.com/idflow/idflow"
)

const (
	sessionCols          = `id, user_id, title, COALESCE(app_id, ''), COALESCE(agent_id, ''), created_at, updated_at`
	listSessionsSQL      = `SELECT ` + sessionCols + ` FROM sessions WHERE user_id = ?`
	listSessionsByAppSQL = listSessionsSQL + ` AND app_id = ?`
)

func scanSession(r rowScanner) (idflow.ChatSession, error) {
	var s idflow.ChatSession
	var created, updated int64
	err := r.Scan(&s.ID, &s.UserID, &s.Title, &s.AppID, &s.AgentID, &created, &updated)
	s.CreatedAt, s.UpdatedAt = fromNanos(created), fromNanos(updated)
	return s, err
}

func sessionKey(s idflow.ChatSession) cursor { return cursor{Key: nanos(s.CreatedAt), ID: s.ID} }

// requireRefs checks, inside the write transaction, that a session's app and
// agent belong to its owner.
func requireRefs(ctx context.Context, tx *sql.Tx, owner, appID, agentID string) error {
	if err := requireOwned(ctx, tx, "apps", "app", owner, appID); err != nil {
		return err
	}
	return requireOwned(ctx, tx, "agents", "agent", owner, agentID)
}

func (db *DB) CreateSession(ctx context.Context, p idflow.Principal, s idflow.ChatSession) (idflow.ChatSession, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.ChatSession{}, err
	}
	now := db.now()
	s = idflow.ChatSession{ID: idflow.NewID(idflow.PrefixSession), UserID: owner, Title: s.Title, AppID: s.AppID,
		AgentID: s.AgentID, CreatedAt: now, UpdatedAt: now}
	err = db.tx(ctx, "create session", func(tx *sql.Tx) error {
		if err := requireRefs(ctx, tx, owner, s.AppID, s.AgentID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO sessions (id, user_id, title, app_id, agent_id, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, s.ID, owner, s.Title, nullable(s.AppID), nullable(s.AgentID), nanos(now), nanos(now))
		return err
	})
	if err != nil {
		return idflow.ChatSession{}, err
	}
	return s, nil
}

func (db *DB) GetSession(ctx context.Context, p idflow.Principal, id string) (idflow.ChatSession, error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.ChatSession{}, err
	}
	return getOne(ctx, db.r, "session", `SELECT `+sessionCols+` FROM sessions WHERE user_id = ? AND id = ?`, scanSession, owner, id)
}

func (db *DB) ListSessions(ctx context.Context, p idflow.Principal, f idflow.SessionFilter, page idflow.Page) (idflow.List[idflow.ChatSession], error) {
	owner, err := p.Owner()
	if err != nil {
		return idflow.List[idflow.ChatSession]{Items: []idflow.ChatSession{}}, err
	}
	base, args := listSessionsSQL, []any{owner}
	if f.AppID != "" {
		base, args = listSessionsByAppSQL, append(args, f.AppID)
	}
	return list(ctx, db.rp, base, args, byCreated, false, page, scanSession, sessionKey)
}

// UpdateSession applies patch; an AppID or AgentID set to "" clears the
// reference, and a non-empty one must name the caller's own app or agent.
func (db *DB) UpdateSession(ctx context.Context, p idflow.Principal, id string, patch idflow.SessionPatch) (idflow.ChatSession, error) {
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
	var s idflow.ChatSession
	err = db.tx(ctx, "update session", func(tx *sql.Tx) error {
		// The session first, so that another user's session answers "session
		// not found" whatever the patch names.
		if err := requireOwned(ctx, tx, "sessions", "session", owner, id); err != nil {
			return err
		}
		if err := requireRefs(ctx, tx, owner, appID, agentID); err != nil {
			return err
		}
		var err error
		s, err = getOne(ctx, tx, "session", `UPDATE sessions SET title = COALESCE(?, title),
			app_id = IIF(?, ?, app_id), agent_id = IIF(?, ?, agent_id), updated_at = ?
			WHERE user_id = ? AND id = ? RETURNING `+sessionCols, scanSession,
			optional(patch.Title), patch.AppID != nil, nullable(appID), patch.AgentID != nil, nullable(agentID),
			nanos(db.now()), owner, id)
		return err
	})
	if err != nil {
		return idflow.ChatSession{}, err
	}
	return s, nil
}

// DeleteSession deletes the session and its messages.
func (db *DB) DeleteSession(ctx context.Context, p idflow.Principal, id string) error {
	owner, err := p.Owner()
	if err != nil {
		return err
	}
	return db.tx(ctx, "delete session", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE user_id = ? AND session_id = ?`, owner, id); err != nil {
			return err
		}
		return deleteOwned(ctx, tx, "sessions", "session", owner, id)
	})
}

const (
	messageCols     = `id, user_id, session_id, role, content, tool_calls, tool_call_id, name, created_at, updated_at`
	listMessagesSQL = `SELECT ` + messageCols + ` FROM messages WHERE user_id = ? AND session_id = ?`
	// recentMessagesSQL is the newest messages of a session, newest first.
	recentMessagesSQL = listMessagesSQL + ` ORDER BY created_at DESC, id DESC LIMIT ?`
)

func scanMessage(r rowScanner) (idflow.Message, error) {
	var m idflow.Message
	var created, updated int64
	var calls sql.NullString
	err := r.Scan(&m.ID, &m.UserID, &m.SessionID, &m.Role, &m.Content, &calls, &m.ToolCallID, &m.Name, &created, &updated)
	m.CreatedAt, m.UpdatedAt = fromNanos(created), fromNanos(updated)
	if err == nil && calls.Valid {
		err = json.Unmarshal([]byte(calls.String), &m.ToolCalls)
	}
	return m, err
}

func messageKey(m idflow.Message) cursor { return cursor{Key: nanos(m.CreatedAt), ID: m.ID} }

// toolCallsJSON is a message's tool calls as stored: NULL when it has none.
func toolCallsJSON(calls []idflow.ToolCall) (any, error) {
	if len(calls) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(calls)
	if err != nil {
		return nil, idflow.WrapError(idflow.EINVALID, "the arguments of a tool call are not JSON", err)
	}
	return string(b), nil
}

// AddMessages appends msgs to the caller's session, in order, and touches the
// session's updated_at.
func (db *DB) AddMessages(ctx context.Context, p idflow.Principal, sessionID string, msgs ...idflow.Message) ([]idflow.Message, error) {
	owner, err := p.Owner()
	if err != nil {
		return nil, err
	}
	out := make([]idflow.Message, 0, len(msgs))
	err = db.tx(ctx, "add messages", func(tx *sql.Tx) error {
		if err := requireOwned(ctx, tx, "sessions", "session", owner, sessionID); err != nil {
			return err
		}
		var last int64
		for _, m := range msgs {
			now := db.now()
			id := m.ID
			if !idflow.IsNewID(idflow.PrefixMessage, id) {
				id = idflow.NewID(idflow.PrefixMessage)
			}
			m = idflow.Message{ID: id, UserID: owner, SessionID: sessionID, Role: m.Role, Content: m.Content,
				ToolCalls: m.ToolCalls, ToolCallID: m.ToolCallID, Name: m.Name, CreatedAt: now, UpdatedAt: now}
			calls, err := toolCallsJSON(m.ToolCalls)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO messages (`+messageCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				m.ID, owner, sessionID, m.Role, m.Content, calls, m.ToolCallID, m.Name, nanos(now), nanos(now)); err != nil {
				return err
			}
			out, last = append(out, m), nanos(now)
		}
		if last == 0 {
			return nil
		}
		_, err := tx.ExecContext(ctx, `UPDATE sessions SET updated_at = ? WHERE user_id = ? AND id = ?`, last, owner, sessionID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListMessages answers the session's history, oldest first; another user's
// session is not found.
func (db *DB) ListMessages(ctx context.Context, p idflow.Principal, sessionID string, page idflow.Page) (idflow.List[idflow.Message], error) {
	empty := idflow.List[idflow.Message]{Items: []idflow.Message{}}
	owner, err := p.Owner()
	if err != nil {
		return empty, err
	}
	if _, err := getOne(ctx, db.r, "session", `SELECT id FROM sessions WHERE user_id = ? AND id = ?`, scanString, owner, sessionID); err != nil {
		return empty, err
	}
	return list(ctx, db.r, listMessagesSQL, []any{owner, sessionID}, byCreated, true, page, scanMessage, messageKey)
}

// RecentMessages answers the session's newest limit messages, oldest first;
// another user's session is not found.
func (db *DB) RecentMessages(ctx context.Context, p idflow.Principal, sessionID string, limit int) ([]idflow.Message, error) {
	owner, err := p.Owner()
	if err != nil {
		return nil, err
	}
	if limit < 1 || limit > idflow.MaxRecentMessages {
		return nil, idflow.Errorf(idflow.EINVALID, "limit must be within 1..%d", idflow.MaxRecentMessages)
	}
	if _, err := getOne(ctx, db.r, "session", `SELECT id FROM sessions WHERE user_id = ? AND id = ?`, scanString, owner, sessionID); err != nil {
		return nil, err
	}
	rows, err := db.r.QueryContext(ctx, recentMessagesSQL, owner, sessionID, limit)
	if err != nil {
		return nil, fail("recent messages", err)
	}
	defer rows.Close()
	out := []idflow.Message{}
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, fail("recent messages", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fail("recent messages", err)
	}
	slices.Reverse(out)
	return out, nil
}

func scanString(r rowScanner) (string, error) {
	var s string
	err := r.Scan(&s)
	return s, err
}
