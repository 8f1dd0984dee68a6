package idflow

import (
	"context"
	"encoding/json"
	"time"
)

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

// Validate checks the input a run is started with: JSON, the JSON null
// when there is none (Validate then sets it).
func (r *Run) Validate() error {
	if len(r.Input) == 0 {
		r.Input = json.RawMessage("null")
	}
	if !json.Valid(r.Input) {
		return Errorf(EINVALID, "input must be JSON")
	}
	return nil
}

// RunUpdate is a status transition.
type RunUpdate struct {
	Status  string
	Error   string
	Output  json.RawMessage
	Attempt int
}

// Validate checks a transition: to running or to an end, with an output
// that is JSON when there is one.
func (u RunUpdate) Validate() error {
	switch u.Status {
	case RunRunning, RunSucceeded, RunFailed, RunCancelled:
	default:
		return Errorf(EINVALID, "invalid run status %q", u.Status)
	}
	if len(u.Output) > 0 && !json.Valid(u.Output) {
		return Errorf(EINVALID, "output must be JSON")
	}
	return nil
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

// Validate checks that the event's data, when there is any, is JSON.
func (e Event) Validate() error {
	if len(e.Data) > 0 && !json.Valid(e.Data) {
		return Errorf(EINVALID, "event data must be JSON")
	}
	return nil
}

// Terminal reports whether the event ends its run.
func (e Event) Terminal() bool {
	return e.Type == EventRunCompleted || e.Type == EventRunFailed || e.Type == EventRunCancelled
}

// RunStore keeps runs and their events, scoped to the owner like every store.
type RunStore interface {
	GetRun(ctx context.Context, p Principal, id string) (Run, error)
	ListRuns(ctx context.Context, p Principal, page Page) (List[Run], error)
	// UpdateRun moves a run to status (and sets error/output when given). A
	// run that already ended is never changed: it answers ECONFLICT. A run
	// that ends frees its owner's admission slot, and the owner's oldest
	// waiting run is admitted in the same transaction (sqlstore.RunQueue).
	UpdateRun(ctx context.Context, p Principal, id string, u RunUpdate) (Run, error)
	// AppendEvent stores e with the next seq of its run and returns it.
	AppendEvent(ctx context.Context, p Principal, e Event) (Event, error)
	// ListEvents answers a run's events with seq > afterSeq, in order.
	ListEvents(ctx context.Context, p Principal, runID string, afterSeq int64, limit int) ([]Event, error)
}

// EventBus fans run events out to subscribers, on this process (memory) or
// across replicas (Redis). Topics are per (owner, run): a subscriber can only
// ever receive the events of runs its Principal owns.
type EventBus interface {
	Publish(ctx context.Context, e Event) error
	// Subscribe delivers p's events of runID until ctx ends or the
	// subscription is closed. A subscriber that falls behind by more than
	// its buffer is dropped (Dropped reports it), never blocking others.
	Subscribe(ctx context.Context, p Principal, runID string) (Subscription, error)
}

// Subscription is a live stream of one run's events.
type Subscription interface {
	Events() <-chan Event
	// Dropped reports whether the subscriber was dropped for being slow.
	Dropped() bool
	Close()
}

// CancelledUserDisabled is the reason in a run.cancelled event's data when
// the run was cancelled because its owner was disabled.
const CancelledUserDisabled = "user disabled"

// CancelledByDeactivation reports whether e cancelled its run because the
// owner was disabled.
func (e Event) CancelledByDeactivation() bool {
	if e.Type != EventRunCancelled {
		return false
	}
	var d struct {
		Reason string `json:"reason"`
	}
	return json.Unmarshal(e.Data, &d) == nil && d.Reason == CancelledUserDisabled
}
