package postgres

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/idflow/idflow"
)

const (
	sessionCols          = `id, user_id, title, COALESCE(app_id, ''), COALESCE(agent_id, ''), created_at, updated_at`
	listSessionsSQL      = `SELECT ` + sessionCols + ` FROM sessions WHERE user_id = $1`
	listSessionsByAppSQL = listSessionsSQL + ` AND app_id = $2`
)

func scanSession(r rowScanner) (idflow.ChatSession, error) {
	var s idflow.ChatSession
	err := r.Scan(&s.ID, &s.UserID, &s.Title, &s.AppID, &s.AgentID, &s.CreatedAt, &s.UpdatedAt)
	return s, err
}

func sessionKey(s idflow.ChatSession) cursor { return cursor{Key: timeKey(s.CreatedAt), ID: s.ID} }

// requireRefs checks, inside the transaction, that a session's app and agent
// belong to its owner.
func requireRefs(ctx context.Context, tx pgx.Tx, owner, appID, agentID string) error {
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
	err = db.asUser(ctx, "create session", owner, readWrite, func(tx pgx.Tx) error {
		if err := requireRefs(ctx, tx, owner, s.AppID, s.AgentID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO sessions (id, user_id, title, app_id, agent_id, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, s.ID, owner, s.Title, nullable(s.AppID), nullable(s.AgentID), now, now)
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
	var s idflow.ChatSession
	err = db.asUser(ctx, "get session", owner, readOnly, func(tx pgx.Tx) error {
		var err error
		s, err = getOne(ctx, tx, "session", `SELECT `+sessionCols+` FROM sessions WHERE user_id = $1 AND id = $2`, scanSession, owner, id)
		return err
	})
	return s, err
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
	return listAs(ctx, db, "list sessions", owner, base, args, byCreated, false, page, scanSession, sessionKey)
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
	err = db.asUser(ctx, "update session", owner, readWrite, func(tx pgx.Tx) error {
		// The session first, so that another user's session answers "session
		// not found" whatever the patch names.
		if err := requireOwned(ctx, tx, "sessions", "session", owner, id); err != nil {
			return err
		}
		if err := requireRefs(ctx, tx, owner, appID, agentID); err != nil {
			return err
		}
		var err error
		s, err = getOne(ctx, tx, "session", `UPDATE sessions SET title = COALESCE($1, title),
			app_id = CASE WHEN $2 THEN $3 ELSE app_id END, agent_id = CASE WHEN $4 THEN $5 ELSE agent_id END,
			updated_at = $6
			WHERE user_id = $7 AND id = $8 RETURNING `+sessionCols, scanSession,
			optional(patch.Title), patch.AppID != nil, nullable(appID), patch.AgentID != nil, nullable(agentID),
			db.now(), owner, id)
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
	return db.asUser(ctx, "delete session", owner, readWrite, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM messages WHERE user_id = $1 AND session_id = $2`, owner, id); err != nil {
			return err
		}
		return deleteOwned(ctx, tx, "sessions", "session", owner, id)
	})
}

const (
	messageCols     = `id, user_id, session_id, role, content, tool_calls, tool_call_id, name, created_at, updated_at`
	listMessagesSQL = `SELECT id, user_id, session_id, role, content, tool_calls::text, tool_call_id, name, created_at, updated_at
		FROM messages WHERE user_id = $1 AND session_id = $2`
	// recentMessagesSQL is the newest messages of a session, newest first.
	recentMessagesSQL = listMessagesSQL + ` ORDER BY created_at DESC, id DESC LIMIT $3`
)

func scanMessage(r rowScanner) (idflow.Message, error) {
	var m idflow.Message
	var calls *string
	err := r.Scan(&m.ID, &m.UserID, &m.SessionID, &m.Role, &m.Content, &calls, &m.ToolCallID, &m.Name, &m.CreatedAt, &m.UpdatedAt)
	if err == nil && calls != nil {
		err = json.Unmarshal([]byte(*calls), &m.ToolCalls)
	}
	return m, err
}

func messageKey(m idflow.Message) cursor { return cursor{Key: timeKey(m.CreatedAt), ID: m.ID} }

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

// AddMessages appends msgs to the caller's session, in order, and touches the
// session's updated_at.
func (db *DB) AddMessages(ctx context.Context, p idflow.Principal, sessionID string, msgs ...idflow.Message) ([]idflow.Message, error) {
	owner, err := p.Owner()
	if err != nil {
		return nil, err
	}
	out := make([]idflow.Message, 0, len(msgs))
	err = db.asUser(ctx, "add messages", owner, readWrite, func(tx pgx.Tx) error {
		// FOR NO KEY UPDATE: concurrent appends to one session queue here,
		// and a concurrent delete of the session cannot slip in between.
		if _, err := getOne(ctx, tx, "session", `SELECT id FROM sessions WHERE user_id = $1 AND id = $2 FOR NO KEY UPDATE`,
			scanString, owner, sessionID); err != nil {
			return err
		}
		if len(msgs) == 0 {
			return nil
		}
		n := len(msgs)
		ids, roles, contents := make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
		calls, callIDs, names := make([]*string, 0, n), make([]string, 0, n), make([]string, 0, n)
		times := make([]time.Time, 0, n)
		for _, m := range msgs {
			now := db.now()
			id := m.ID
			if !idflow.IsNewID(idflow.PrefixMessage, id) {
				id = idflow.NewID(idflow.PrefixMessage)
			}
			m = idflow.Message{ID: id, UserID: owner, SessionID: sessionID, Role: m.Role, Content: m.Content,
				ToolCalls: m.ToolCalls, ToolCallID: m.ToolCallID, Name: m.Name, CreatedAt: now, UpdatedAt: now}
			c, err := toolCallsJSON(m.ToolCalls)
			if err != nil {
				return err
			}
			out = append(out, m)
			ids, roles, contents, times = append(ids, m.ID), append(roles, m.Role), append(contents, m.Content), append(times, now)
			calls, callIDs, names = append(calls, c), append(callIDs, m.ToolCallID), append(names, m.Name)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO messages (`+messageCols+`)
			SELECT m.id, $1, $2, m.role, m.content, m.calls::json, m.call_id, m.name, m.at, m.at
			FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[])
				AS m(id, role, content, calls, call_id, name, at)`,
			owner, sessionID, ids, roles, contents, calls, callIDs, names, times); err != nil {
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
func (db *DB) ListMessages(ctx context.Context, p idflow.Principal, sessionID string, page idflow.Page) (idflow.List[idflow.Message], error) {
	out := idflow.List[idflow.Message]{Items: []idflow.Message{}}
	owner, err := p.Owner()
	if err != nil {
		return out, err
	}
	err = db.asUser(ctx, "list messages", owner, readOnly, func(tx pgx.Tx) error {
		if _, err := getOne(ctx, tx, "session", `SELECT id FROM sessions WHERE user_id = $1 AND id = $2`,
			scanString, owner, sessionID); err != nil {
			return err
		}
		var err error
		out, err = list(ctx, tx, listMessagesSQL, []any{owner, sessionID}, byCreated, true, page, scanMessage, messageKey)
		return err
	})
	if out.Items == nil {
		out.Items = []idflow.Message{}
	}
	return out, err
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
	out := []idflow.Message{}
	err = db.asUser(ctx, "recent messages", owner, readOnly, func(tx pgx.Tx) error {
		if _, err := getOne(ctx, tx, "session", `SELECT id FROM sessions WHERE user_id = $1 AND id = $2`,
			scanString, owner, sessionID); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, recentMessagesSQL, owner, sessionID, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			m, err := scanMessage(rows)
			if err != nil {
				return err
			}
			out = append(out, m)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	slices.Reverse(out)
	return out, nil
}

func scanString(r rowScanner) (string, error) {
	var s string
	err := r.Scan(&s)
	return s, err
}
