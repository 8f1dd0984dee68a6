package idflow

import (
	"context"
	"time"
)

// ChatSession is a conversation; AppID and AgentID, when set, name objects
// owned by the same user.
type ChatSession struct {
	ID        string    `json:"id"`
	UserID    string    `json:"user_id"`
	Title     string    `json:"title"`
	AppID     string    `json:"app_id,omitempty"`
	AgentID   string    `json:"agent_id,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Validate trims the session's title and checks it (CheckText); a title
// is optional. That the app and agent are the owner's is the store's to
// check, in the transaction that records the session.
func (s *ChatSession) Validate() error {
	var err error
	s.Title, err = CheckText("title", s.Title, MaxNameLen, false)
	return err
}

// SessionPatch changes the fields that are set.
type SessionPatch struct {
	Title   *string `json:"title"`
	AppID   *string `json:"app_id"`
	AgentID *string `json:"agent_id"`
}

// Validate checks the title, when set: it cannot be set empty.
func (p *SessionPatch) Validate() error {
	var err error
	p.Title, err = checkPatchText("title", p.Title, MaxNameLen, true)
	return err
}

// SessionFilter narrows a session list.
type SessionFilter struct {
	AppID string
}

// Message is one message of a chat session. An agent turn stores the user's
// message, each assistant message that calls tools (ToolCalls), each tool's
// result (role "tool", ToolCallID and Name) and the final reply.
type Message struct {
	ID         string     `json:"id"`
	UserID     string     `json:"user_id"`
	SessionID  string     `json:"session_id"`
	Role       string     `json:"role"` // "user", "assistant" or "tool"
	Content    string     `json:"content"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`   // an assistant message that calls tools
	ToolCallID string     `json:"tool_call_id,omitempty"` // a tool message: the call it answers
	Name       string     `json:"name,omitempty"`         // a tool message: the tool that answered
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
}

// MaxRecentMessages bounds RecentMessages.
const MaxRecentMessages = 200

// MaxMessageLen bounds the content of a message a user writes (and of a
// workflow's prompt step), in characters.
const MaxMessageLen = 32 << 10

// Validate trims the content of a message a user writes and checks it:
// required, CheckText. The messages an agent turn adds (replies, tool
// calls and results) are the model's and the tools', bounded where they
// are made.
func (m *Message) Validate() error {
	var err error
	m.Content, err = CheckText("content", m.Content, MaxMessageLen, true)
	return err
}

// SessionStore keeps chat sessions and their messages.
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
