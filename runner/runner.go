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
	"github.com/idflow/idflow/internal/sqlstore"
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
	RunsPerUser int           // runs of one user admitted at once (default 2)
	// SweepInterval is how often runs whose jobs ended without them are
	// failed (default 1 min).
	SweepInterval time.Duration
}

// DefaultRunsPerUser is RunsPerUser when unset (IDFLOW_RUNS_PER_USER).
const DefaultRunsPerUser = 2

func (c *Config) defaults() {
	if c.RunTimeout <= 0 {
		c.RunTimeout = 5 * time.Minute
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
	if c.RunsPerUser <= 0 {
		c.RunsPerUser = DefaultRunsPerUser
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = time.Minute
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
	cfg    Config
	client *river.Client[TTx]
	queue  sqlstore.RunQueue[TTx]
	exec   *Executor
}

// New returns a Runner, and sets queue to admit at most cfg.RunsPerUser
// runs of each user at once, each as a job of client. Register must have
// been called on the River config that built client.
func New[TTx any](cfg Config, queue sqlstore.RunQueue[TTx], exec *Executor, client *river.Client[TTx]) *Runner[TTx] {
	cfg.defaults()
	r := &Runner[TTx]{cfg: cfg, client: client, queue: queue, exec: exec}
	queue.SetRunAdmission(sqlstore.RunAdmission[TTx]{PerUser: cfg.RunsPerUser, Enqueue: r.enqueue})
	return r
}

// enqueue inserts the job of an admitted run, in the store's transaction.
func (r *Runner[TTx]) enqueue(ctx context.Context, tx TTx, runID string, owner idflow.Snapshot) (int64, error) {
	res, err := r.client.InsertTx(ctx, tx, Args{RunID: runID, Owner: owner}, &river.InsertOpts{MaxAttempts: r.cfg.MaxAttempts})
	if err != nil {
		return 0, err
	}
	return res.Job.ID, nil
}

// Sweeper fails the runs whose jobs ended without them (sqlstore.RunQueue).
type Sweeper interface {
	FailStrandedRuns(ctx context.Context, limit int) ([]idflow.Event, error)
}

// Register adds the run worker and the stranded-run sweeper to workers.
func Register(workers *river.Workers, exec *Executor, sweeper Sweeper, cfg Config) {
	cfg.defaults()
	river.AddWorker(workers, &worker{exec: exec, cfg: cfg})
	river.AddWorker(workers, &sweepWorker{exec: exec, sweeper: sweeper})
}

// PeriodicJobs are the River periodic jobs of runs: the stranded-run sweep,
// at start and every cfg.SweepInterval. River's leader enqueues them, so one
// replica sweeps at a time.
func PeriodicJobs(cfg Config) []*river.PeriodicJob {
	cfg.defaults()
	return []*river.PeriodicJob{river.NewPeriodicJob(river.PeriodicInterval(cfg.SweepInterval),
		func() (river.JobArgs, *river.InsertOpts) { return sweepArgs{}, &river.InsertOpts{MaxAttempts: 1} },
		&river.PeriodicJobOpts{RunOnStart: true})}
}

// Start records a run of workflowID as p; it is admitted (its job
// enqueued) in the same transaction when p has fewer than RunsPerUser runs
// admitted, else it waits, queued, behind p's earlier runs. version 0 runs
// the current draft; N runs frozen version N.
func (r *Runner[TTx]) Start(ctx context.Context, p idflow.Principal, workflowID string, input json.RawMessage, version int) (idflow.Run, error) {
	run, err := r.exec.prepare(ctx, p, workflowID, input, version)
	if err != nil {
		return idflow.Run{}, err
	}
	created, err := r.queue.CreateRun(ctx, p, run)
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
	tools idflow.ToolCatalog
	log   *slog.Logger

	mu      sync.Mutex
	running map[string]context.CancelCauseFunc // runs executing in this process
}

// NewExecutor returns an Executor; tools runs its `tool` steps.
func NewExecutor(svc *service.Service, runs RunStore, bus idflow.EventBus, tools idflow.ToolCatalog, log *slog.Logger) *Executor {
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
	data := map[string]string{"by": p.UserID}
	if p.AuthMethod == idflow.AuthLifecycle {
		// Its sockets close with 4403 on every replica, even one that
		// sees this event before it learns of the deactivation.
		data["reason"] = idflow.CancelledUserDisabled
	}
	if err := e.emit(ctx, p, runID, idflow.EventRunCancelled, "", data); err != nil {
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
		return river.JobCancel(err) // a job without an owner never runs (its run is swept)
	}
	final := job.Attempt >= job.MaxAttempts
	return w.exec.execute(ctx, p, job.Args.RunID, job.Attempt, final)
}

// strandedBatch bounds the runs one sweep transaction fails.
const strandedBatch = 100

// sweepArgs is the periodic job of the stranded-run sweep.
type sweepArgs struct{}

// Kind implements river.JobArgs.
func (sweepArgs) Kind() string { return "idflow.runs.sweep" }

// sweepWorker fails the runs whose jobs ended without them, so that they
// stop holding their owners' slots, and publishes their run.failed events.
type sweepWorker struct {
	river.WorkerDefaults[sweepArgs]
	exec    *Executor
	sweeper Sweeper
}

func (w *sweepWorker) Work(ctx context.Context, _ *river.Job[sweepArgs]) error {
	for {
		evs, err := w.sweeper.FailStrandedRuns(ctx, strandedBatch)
		if err != nil {
			return fmt.Errorf("sweep stranded runs: %w", err)
		}
		for _, ev := range evs {
			w.exec.log.WarnContext(ctx, "failed a run whose job ended without it", "run_id", ev.RunID)
			if err := w.exec.bus.Publish(ctx, ev); err != nil {
				w.exec.log.WarnContext(ctx, "publish event", "run_id", ev.RunID, "err", err)
			}
		}
		if len(evs) < strandedBatch {
			return nil
		}
	}
}
