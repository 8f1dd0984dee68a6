// Package runner executes workflow runs as durable River jobs. A job carries
// the owner's Principal snapshot, never a token; the worker rebuilds the
// Principal from it (auth.FromSnapshot) and acts only through owner-scoped
// services, so every event it writes names the run's owner.
package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/riverqueue/river"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/service"
)

// Args is the job of one run.
type Args struct {
	RunID string          `json:"run_id"`
	Owner idflow.Snapshot `json:"owner"`
}

// Kind implements river.JobArgs.
func (Args) Kind() string { return "idflow.run" }

// Config tunes execution.
type Config struct {
	RunTimeout  time.Duration // whole-run limit (default 5 min)
	MaxAttempts int           // River attempts before a run fails (default 3)
}

func (c *Config) defaults() {
	if c.RunTimeout <= 0 {
		c.RunTimeout = 5 * time.Minute
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
}

// RunStore is what the runner needs of the store.
type RunStore interface {
	idflow.RunStore
	idflow.WorkflowStore
}

// Runner starts, executes and cancels runs. TTx is the backend's
// transaction type (database/sql for SQLite, pgx for PostgreSQL).
type Runner[TTx any] struct {
	cfg     Config
	client  *river.Client[TTx]
	creator idflow.RunCreator[TTx]
	exec    *Executor
}

// New returns a Runner. Register(workers) must have been called on the
// River config that built client.
func New[TTx any](cfg Config, creator idflow.RunCreator[TTx], exec *Executor) *Runner[TTx] {
	cfg.defaults()
	return &Runner[TTx]{cfg: cfg, creator: creator, exec: exec}
}

// SetClient attaches the River client (built after the workers it runs).
func (r *Runner[TTx]) SetClient(c *river.Client[TTx]) { r.client = c }

// Register adds the run worker to workers.
func Register(workers *river.Workers, exec *Executor, cfg Config) {
	cfg.defaults()
	river.AddWorker(workers, &worker{exec: exec, cfg: cfg})
}

// Start records a run of workflowID as p and enqueues its job, in one
// transaction. version 0 runs the current draft; N runs frozen version N.
func (r *Runner[TTx]) Start(ctx context.Context, p idflow.Principal, workflowID string, input json.RawMessage, version int) (idflow.Run, error) {
	run, err := r.exec.prepare(ctx, p, workflowID, input, version)
	if err != nil {
		return idflow.Run{}, err
	}
	args := Args{RunID: run.ID, Owner: p.Snapshot()}
	created, err := r.creator.CreateRun(ctx, p, run, func(ctx context.Context, tx TTx, _ idflow.Run) error {
		_, err := r.client.InsertTx(ctx, tx, args, &river.InsertOpts{MaxAttempts: r.cfg.MaxAttempts})
		return err
	})
	r.exec.svc.Audit(ctx, p, "run.start", "workflow/"+workflowID, err)
	if err != nil {
		return idflow.Run{}, err
	}
	r.exec.publishHistory(ctx, p, created.ID)
	return created, nil
}

// Cancel ends a run as p; a run that already ended answers ECONFLICT.
func (r *Runner[TTx]) Cancel(ctx context.Context, p idflow.Principal, runID string) (idflow.Run, error) {
	return r.exec.cancel(ctx, p, runID)
}

// Executor runs the steps of a run as its owner.
type Executor struct {
	svc   *service.Service
	runs  RunStore
	bus   idflow.EventBus
	tools *Tools
	log   *slog.Logger

	mu      sync.Mutex
	running map[string]context.CancelCauseFunc // runs executing in this process
}

// NewExecutor returns an Executor.
func NewExecutor(svc *service.Service, runs RunStore, bus idflow.EventBus, tools *Tools, log *slog.Logger) *Executor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Executor{svc: svc, runs: runs, bus: bus, tools: tools, log: log, running: map[string]context.CancelCauseFunc{}}
}

var errCancelled = errors.New("run cancelled")

func (e *Executor) prepare(ctx context.Context, p idflow.Principal, workflowID string, input json.RawMessage, version int) (idflow.Run, error) {
	if _, err := p.Owner(); err != nil {
		return idflow.Run{}, err
	}
	wf, err := e.svc.GetWorkflow(ctx, p, workflowID)
	if err != nil {
		return idflow.Run{}, err
	}
	def := wf.Definition
	if version != 0 {
		if def, err = e.runs.GetWorkflowVersion(ctx, p, workflowID, version); err != nil {
			return idflow.Run{}, err
		}
	}
	if len(def.Steps) == 0 {
		return idflow.Run{}, idflow.Errorf(idflow.EINVALID, "the workflow has no steps")
	}
	if len(input) == 0 {
		input = json.RawMessage("null")
	}
	if len(input) > 64<<10 {
		return idflow.Run{}, idflow.Errorf(idflow.EINVALID, "input is larger than 64 KiB")
	}
	return idflow.Run{
		ID: idflow.NewID(idflow.PrefixRun), TenantID: p.TenantID, WorkflowID: workflowID,
		WorkflowVersion: version, Definition: def, Status: idflow.RunQueued, Input: input,
	}, nil
}

// publishHistory republishes the events stored so far (after a commit).
func (e *Executor) publishHistory(ctx context.Context, p idflow.Principal, runID string) {
	evs, err := e.runs.ListEvents(ctx, p, runID, 0, 1000)
	if err != nil {
		e.log.WarnContext(ctx, "list events", "run_id", runID, "err", err)
		return
	}
	for _, ev := range evs {
		_ = e.bus.Publish(ctx, ev)
	}
}

// emit stores an event as p and publishes it.
func (e *Executor) emit(ctx context.Context, p idflow.Principal, runID, typ, stepID string, data any) error {
	var raw json.RawMessage
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			return fmt.Errorf("event data: %w", err)
		}
		raw = b
	}
	ev, err := e.runs.AppendEvent(context.WithoutCancel(ctx), p, idflow.Event{RunID: runID, Type: typ, StepID: stepID, Data: raw})
	if err != nil {
		return fmt.Errorf("append event: %w", err)
	}
	if err := e.bus.Publish(ctx, ev); err != nil {
		e.log.WarnContext(ctx, "publish event", "run_id", runID, "err", err)
	}
	return nil
}

func (e *Executor) cancel(ctx context.Context, p idflow.Principal, runID string) (idflow.Run, error) {
	run, err := e.runs.UpdateRun(ctx, p, runID, idflow.RunUpdate{Status: idflow.RunCancelled})
	e.svc.Audit(ctx, p, "run.cancel", "run/"+runID, err)
	if err != nil {
		return idflow.Run{}, err
	}
	if err := e.emit(ctx, p, runID, idflow.EventRunCancelled, "", map[string]string{"by": p.UserID}); err != nil {
		return idflow.Run{}, err
	}
	e.mu.Lock()
	stop := e.running[runID]
	e.mu.Unlock()
	if stop != nil {
		stop(errCancelled)
	}
	return run, nil
}

// worker is the River worker of Args.
type worker struct {
	river.WorkerDefaults[Args]
	exec *Executor
	cfg  Config
}

func (w *worker) Timeout(*river.Job[Args]) time.Duration { return w.cfg.RunTimeout }

func (w *worker) Work(ctx context.Context, job *river.Job[Args]) error {
	p, err := auth.FromSnapshot(job.Args.Owner)
	if err != nil {
		return river.JobCancel(err) // a job without an owner never runs
	}
	final := job.Attempt >= job.MaxAttempts
	return w.exec.execute(ctx, p, job.Args.RunID, job.Attempt, final)
}
