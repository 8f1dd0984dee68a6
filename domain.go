package idflow

import (
	"encoding/json"
	"time"
)

// Id prefixes (DESIGN §4). Ids are random, at least 96 bits.
const (
	PrefixApp      = "app_"
	PrefixSession  = "ses_"
	PrefixMessage  = "msg_"
	PrefixAgent    = "agt_"
	PrefixWorkflow = "wf_"
	PrefixRun      = "run_"
	PrefixDocument = "doc_"
	PrefixFact     = "fct_"
	PrefixAudit    = "aud_"
)

// Page asks for one page of a list, newest first.
type Page struct {
	Limit  int
	Cursor string
}

// Page limits (DESIGN §4).
const (
	DefaultPageLimit = 50
	MaxPageLimit     = 200
	// MaxRecentMessages bounds RecentMessages.
	MaxRecentMessages = 200
)

// List is one page of results.
type List[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
}

type App struct {
	ID          string    `json:"id"`
	UserID      string    `json:"user_id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

type AppPatch struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
}

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

type SessionPatch struct {
	Title   *string `json:"title"`
	AppID   *string `json:"app_id"`
	AgentID *string `json:"agent_id"`
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

type Agent struct {
	ID           string    `json:"id"`
	UserID       string    `json:"user_id"`
	Name         string    `json:"name"`
	Instructions string    `json:"instructions"`
	Model        string    `json:"model"`
	Tools        []string  `json:"tools"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

type AgentPatch struct {
	Name         *string   `json:"name"`
	Instructions *string   `json:"instructions"`
	Model        *string   `json:"model"`
	Tools        *[]string `json:"tools"`
}

// Step types of a workflow definition.
const (
	StepPrompt       = "prompt"
	StepMemorySearch = "memory_search"
	StepTool         = "tool"
	StepWait         = "wait"
)

type Step struct {
	ID     string          `json:"id"`
	Type   string          `json:"type"`
	Prompt string          `json:"prompt,omitempty"`
	Query  string          `json:"query,omitempty"`
	Limit  int             `json:"limit,omitempty"`
	Tool   string          `json:"tool,omitempty"`
	Args   json.RawMessage `json:"args,omitempty"`
	Ms     int             `json:"ms,omitempty"`
}

type Definition struct {
	Steps []Step `json:"steps"`
}

// Workflow statuses.
const (
	WorkflowDraft     = "draft"
	WorkflowPublished = "published"
)

// Workflow is a draft that may have published, frozen versions.
type Workflow struct {
	ID          string     `json:"id"`
	UserID      string     `json:"user_id"`
	Name        string     `json:"name"`
	Definition  Definition `json:"definition"`
	Status      string     `json:"status"`
	Version     int        `json:"version"` // latest published version, 0 when never published
	PublishedAt *time.Time `json:"published_at,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
}

// Run statuses.
const (
	RunQueued    = "queued"
	RunRunning   = "running"
	RunSucceeded = "succeeded"
	RunFailed    = "failed"
	RunCancelled = "cancelled"
)

// Run is one execution of a workflow, frozen at the definition it started with.
type Run struct {
	ID              string          `json:"id"`
	UserID          string          `json:"user_id"`
	TenantID        string          `json:"tenant_id"`
	WorkflowID      string          `json:"workflow_id"`
	WorkflowVersion int             `json:"workflow_version"` // 0 = the draft
	Definition      Definition      `json:"definition"`
	Status          string          `json:"status"`
	Input           json.RawMessage `json:"input"`
	Output          json.RawMessage `json:"output,omitempty"`
	Error           string          `json:"error,omitempty"`
	Attempt         int             `json:"attempt"`
	CreatedAt       time.Time       `json:"created_at"`
	UpdatedAt       time.Time       `json:"updated_at"`
	StartedAt       *time.Time      `json:"started_at,omitempty"`
	FinishedAt      *time.Time      `json:"finished_at,omitempty"`
}

// Terminal reports whether the run has ended.
func (r Run) Terminal() bool {
	return r.Status == RunSucceeded || r.Status == RunFailed || r.Status == RunCancelled
}

// Event types of a run.
const (
	EventRunQueued     = "run.queued"
	EventRunStarted    = "run.started"
	EventStepStarted   = "step.started"
	EventStepOutput    = "step.output"
	EventStepCompleted = "step.completed"
	EventRunCompleted  = "run.completed"
	EventRunFailed     = "run.failed"
	EventRunCancelled  = "run.cancelled"
)

// Event is one entry of a run's history. UserID on every event is the proof
// that identity reached the background worker.
type Event struct {
	RunID  string          `json:"run_id"`
	Seq    int64           `json:"seq"`
	Type   string          `json:"type"`
	StepID string          `json:"step_id,omitempty"`
	UserID string          `json:"user_id"`
	Data   json.RawMessage `json:"data,omitempty"`
	At     time.Time       `json:"at"`
}

// Terminal reports whether the event ends its run.
func (e Event) Terminal() bool {
	return e.Type == EventRunCompleted || e.Type == EventRunFailed || e.Type == EventRunCancelled
}

type Document struct {
	ID          string    `json:"id"`
	UserID      string    `json:"user_id"`
	AppID       string    `json:"app_id,omitempty"`
	Filename    string    `json:"filename"`
	ContentType string    `json:"content_type"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	FactCount   int       `json:"fact_count"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

type Fact struct {
	ID               string    `json:"id"`
	UserID           string    `json:"user_id"`
	Content          string    `json:"content"`
	SourceDocumentID string    `json:"source_document_id,omitempty"`
	CreatedAt        time.Time `json:"created_at"`
	UpdatedAt        time.Time `json:"updated_at"`
}

type ScoredFact struct {
	Fact  Fact    `json:"fact"`
	Score float64 `json:"score"`
}

// User is what idflow remembers of a user it has seen.
type User struct {
	UserID    string    `json:"user_id"`
	TenantID  string    `json:"tenant_id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Issuer    string    `json:"issuer"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// Audit outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeDenied  = "denied"
	OutcomeFailure = "failure"
)

// AuditEvent records one write or one denial. Hash chains it to the event
// before it, so an edited or deleted row shows.
type AuditEvent struct {
	ID        string    `json:"id"`
	Seq       int64     `json:"seq"`
	At        time.Time `json:"at"`
	UserID    string    `json:"user_id"` // the actor; empty when nobody was authenticated
	TenantID  string    `json:"tenant_id"`
	Action    string    `json:"action"`
	Resource  string    `json:"resource"`
	Outcome   string    `json:"outcome"`
	RequestID string    `json:"request_id"`
	Peer      string    `json:"peer"`
	Detail    string    `json:"detail,omitempty"`
	PrevHash  string    `json:"prev_hash"`
	Hash      string    `json:"hash"`
}

// Connection statuses.
const (
	ConnectionActive       = "active"
	ConnectionNeedsConsent = "needs_consent"
)

// Connection is a user's link to a downstream provider; its tokens stay sealed
// in the vault and never leave it in an API answer.
type Connection struct {
	Provider  string     `json:"provider"`
	UserID    string     `json:"user_id"`
	Status    string     `json:"status"`
	Scopes    []string   `json:"scopes"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
}
