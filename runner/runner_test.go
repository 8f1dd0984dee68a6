package runner_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/authz"
	"github.com/idflow/idflow/cache"
	"github.com/idflow/idflow/events"
	"github.com/idflow/idflow/files"
	"github.com/idflow/idflow/internal/sqlstore"
	"github.com/idflow/idflow/llm"
	"github.com/idflow/idflow/runner"
	"github.com/idflow/idflow/service"
	"github.com/idflow/idflow/sqlite"
	"github.com/idflow/idflow/tools"
)

// quickRetry retries a failed job at once, so that a test of retries does
// not wait for River's default backoff (attempt⁴ seconds).
type quickRetry struct{}

func (quickRetry) NextRetry(*rivertype.JobRow) time.Time { return time.Now() }

// rig is a runner on a real SQLite store with River on it, as cmd/idflow
// wires it.
type rig struct {
	cfg    runner.Config
	db     *sqlite.DB
	svc    *service.Service
	bus    *events.Memory
	tools  *testTools
	client *river.Client[*sql.Tx]
	runs   *runner.Runner[*sql.Tx]
	jobs   <-chan *river.Event

	mu   sync.Mutex
	seen []*river.Event // finalized jobs nobody waited for yet
}

func newRig(t testing.TB, cfg runner.Config, workers int) *rig {
	t.Helper()
	return newPolicyRig(t, cfg, workers, nil)
}

// newPolicyRig is newRig with a feature policy (nil: the open policy).
func newPolicyRig(t testing.TB, cfg runner.Config, workers int, policy *authz.Policy) *rig {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "idflow.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	migrator, err := rivermigrate.New(riversqlite.New(db.SQL()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}
	blobs, err := files.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	svc := service.New(service.Config{}, service.Deps{Store: db, Blobs: blobs, Cache: cache.NewScoped(cache.NewMemory(1000), time.Minute), Model: llm.Echo{}, Policy: policy})
	r := &rig{cfg: cfg, db: db, svc: svc, bus: events.NewMemory(0), tools: &testTools{}}
	catalog, err := tools.New(tools.Config{}, tools.Deps{Svc: svc, Sources: []tools.Source{r.tools}})
	if err != nil {
		t.Fatal(err)
	}
	ex := runner.NewExecutor(svc, db, r.bus, catalog, nil)
	ws := river.NewWorkers()
	runner.Register(ws, ex, db, cfg)
	r.client, err = river.NewClient(riversqlite.New(db.SQL()), &river.Config{
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: workers}},
		Workers:           ws,
		PeriodicJobs:      runner.PeriodicJobs(cfg),
		RetryPolicy:       quickRetry{},
		FetchPollInterval: 10 * time.Millisecond,
		FetchCooldown:     5 * time.Millisecond,
		TestOnly:          true,
	})
	if err != nil {
		t.Fatal(err)
	}
	r.runs = runner.New[*sql.Tx](cfg, db, ex, r.client)
	var stop func()
	r.jobs, stop = r.client.Subscribe(river.EventKindJobCompleted, river.EventKindJobCancelled, river.EventKindJobFailed)
	t.Cleanup(stop)
	if err := r.client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.client.StopAndCancel(sctx); err != nil {
			t.Errorf("river stop: %v", err)
		}
	})
	return r
}

// testTools is a tools.Source of the tools a test adds, next to the
// catalog's built-ins; any user may use them.
type testTools struct {
	mu    sync.Mutex
	tools []tools.Tool
}

// Add adds a tool that takes any arguments.
func (s *testTools) Add(name string, run func(context.Context, idflow.Principal, json.RawMessage) (any, error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tools = append(s.tools, tools.Tool{ToolSpec: idflow.ToolSpec{Name: name, Description: "a test tool",
		Parameters: json.RawMessage(`{"type":"object"}`)}, Run: run})
}

func (s *testTools) Tools(context.Context, idflow.Principal) ([]tools.Tool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.tools), nil
}

// workflow creates a workflow of steps as p.
func (r *rig) workflow(t testing.TB, p idflow.Principal, steps ...idflow.Step) idflow.Workflow {
	t.Helper()
	wf, err := r.svc.CreateWorkflow(context.Background(), p, "wf", idflow.Definition{Steps: steps})
	if err != nil {
		t.Fatal(err)
	}
	return wf
}

// start starts a run of wf as p.
func (r *rig) start(t testing.TB, p idflow.Principal, wf idflow.Workflow) idflow.Run {
	t.Helper()
	run, err := r.runs.Start(context.Background(), p, wf.ID, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// holdSlots starts n runs of p that wait ten minutes, holding n of p's
// admission slots: p's next runs are recorded and wait, without a job.
func (r *rig) holdSlots(t testing.TB, p idflow.Principal, n int) {
	t.Helper()
	wf := r.workflow(t, p, idflow.Step{ID: "hold", Type: idflow.StepWait, Ms: 600000})
	for range n {
		r.start(t, p, wf)
	}
}

// waitJob waits for River to finalize a job of runID (or of job id when
// not zero) and answers the event. Events of other jobs are kept for later
// calls.
func (r *rig) waitJob(t testing.TB, runID string, jobID int64) *river.Event {
	t.Helper()
	match := func(ev *river.Event) bool {
		var args runner.Args
		if err := json.Unmarshal(ev.Job.EncodedArgs, &args); err != nil {
			t.Fatal(err)
		}
		return args.RunID == runID && (jobID == 0 || ev.Job.ID == jobID)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, ev := range r.seen {
		if match(ev) {
			r.seen = append(r.seen[:i], r.seen[i+1:]...)
			return ev
		}
	}
	deadline := time.After(30 * time.Second)
	for {
		select {
		case ev := <-r.jobs:
			if ev.Kind == river.EventKindJobFailed && ev.Job.State != rivertype.JobStateDiscarded {
				continue // an attempt failed; River tries again
			}
			if match(ev) {
				return ev
			}
			r.seen = append(r.seen, ev)
		case <-deadline:
			t.Fatalf("the job of run %s was not finalized within 30s", runID)
		}
	}
}

// history is a run's stored events as p.
func (r *rig) history(t testing.TB, p idflow.Principal, runID string) []idflow.Event {
	t.Helper()
	evs, err := r.db.ListEvents(context.Background(), p, runID, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func (r *rig) run(t testing.TB, p idflow.Principal, runID string) idflow.Run {
	t.Helper()
	run, err := r.db.GetRun(context.Background(), p, runID)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

func count(evs []idflow.Event, typ, stepID string) int {
	n := 0
	for _, e := range evs {
		if e.Type == typ && (stepID == "" || e.StepID == stepID) {
			n++
		}
	}
	return n
}

func ownedBy(t testing.TB, evs []idflow.Event, owner string) {
	t.Helper()
	for i, e := range evs {
		if e.UserID != owner || e.Seq != int64(i+1) {
			t.Fatalf("event %d of %s's run: %+v", i, owner, e)
		}
	}
}

var (
	alice = authtest.User("alice", "t-one")
	bob   = authtest.User("bob", "t-one")
)

func TestTemporaryErrorIsRetriedAndTheRunResumes(t *testing.T) {
	r := newRig(t, runner.Config{MaxAttempts: 3}, 2)
	var calls, before atomic.Int32
	r.tools.Add("before", func(context.Context, idflow.Principal, json.RawMessage) (any, error) {
		before.Add(1)
		return "ok", nil
	})
	r.tools.Add("flaky", func(_ context.Context, p idflow.Principal, _ json.RawMessage) (any, error) {
		if calls.Add(1) == 1 {
			return nil, idflow.Errorf(idflow.EUNAVAILABLE, "downstream is down")
		}
		return map[string]string{"as": p.UserID}, nil
	})
	wf := r.workflow(t, alice, idflow.Step{ID: "before", Type: idflow.StepTool, Tool: "before"},
		idflow.Step{ID: "flaky", Type: idflow.StepTool, Tool: "flaky"})
	run := r.start(t, alice, wf)
	ev := r.waitJob(t, run.ID, 0)
	if ev.Kind != river.EventKindJobCompleted || ev.Job.Attempt != 2 {
		t.Fatalf("job: %s at attempt %d; want completed at attempt 2", ev.Kind, ev.Job.Attempt)
	}
	got := r.run(t, alice, run.ID)
	if got.Status != idflow.RunSucceeded || got.Attempt != 2 {
		t.Fatalf("run: %s at attempt %d (%s); want succeeded at attempt 2", got.Status, got.Attempt, got.Error)
	}
	if calls.Load() != 2 || before.Load() != 1 {
		t.Fatalf("flaky called %d times, the step before it %d; want 2 and 1 (completed steps are not re-run)", calls.Load(), before.Load())
	}
	evs := r.history(t, alice, run.ID)
	ownedBy(t, evs, "alice")
	if count(evs, idflow.EventRunStarted, "") != 2 || count(evs, idflow.EventStepCompleted, "flaky") != 1 ||
		count(evs, idflow.EventStepCompleted, "before") != 1 || count(evs, idflow.EventRunCompleted, "") != 1 || count(evs, idflow.EventRunFailed, "") != 0 {
		t.Fatalf("history: %+v", evs)
	}
	var retried bool
	for _, e := range evs {
		if e.Type == idflow.EventStepOutput && e.StepID == "flaky" && string(e.Data) == `{"error":"downstream is down","retrying":"true"}` {
			retried = true
		}
	}
	if !retried {
		t.Fatalf("no step.output reports the retry: %+v", evs)
	}
}

func TestTemporaryErrorOnEveryAttemptFailsTheRun(t *testing.T) {
	r := newRig(t, runner.Config{MaxAttempts: 3}, 2)
	var calls atomic.Int32
	r.tools.Add("down", func(context.Context, idflow.Principal, json.RawMessage) (any, error) {
		calls.Add(1)
		return nil, idflow.Errorf(idflow.EUNAVAILABLE, "still down")
	})
	run := r.start(t, alice, r.workflow(t, alice, idflow.Step{ID: "down", Type: idflow.StepTool, Tool: "down"}))
	ev := r.waitJob(t, run.ID, 0)
	if ev.Kind != river.EventKindJobCancelled || ev.Job.Attempt != 3 {
		t.Fatalf("job: %s at attempt %d; want cancelled at attempt 3 (the last)", ev.Kind, ev.Job.Attempt)
	}
	if got := r.run(t, alice, run.ID); got.Status != idflow.RunFailed || got.Error != "still down" {
		t.Fatalf("run: %s %q; want failed, still down", got.Status, got.Error)
	}
	evs := r.history(t, alice, run.ID)
	ownedBy(t, evs, "alice")
	if calls.Load() != 3 || count(evs, idflow.EventRunStarted, "") != 3 || count(evs, idflow.EventRunFailed, "") != 1 || evs[len(evs)-1].Type != idflow.EventRunFailed {
		t.Fatalf("%d calls; history %+v", calls.Load(), evs)
	}
}

func TestPermanentErrorFailsOnTheFirstAttempt(t *testing.T) {
	r := newRig(t, runner.Config{MaxAttempts: 3}, 2)
	var calls atomic.Int32
	r.tools.Add("refuses", func(context.Context, idflow.Principal, json.RawMessage) (any, error) {
		calls.Add(1)
		return nil, idflow.Errorf(idflow.EINVALID, "bad arguments")
	})
	run := r.start(t, alice, r.workflow(t, alice, idflow.Step{ID: "refuses", Type: idflow.StepTool, Tool: "refuses"},
		idflow.Step{ID: "after", Type: idflow.StepTool, Tool: "whoami"}))
	ev := r.waitJob(t, run.ID, 0)
	if ev.Kind != river.EventKindJobCancelled || ev.Job.Attempt != 1 {
		t.Fatalf("job: %s at attempt %d; want cancelled at attempt 1", ev.Kind, ev.Job.Attempt)
	}
	got := r.run(t, alice, run.ID)
	if got.Status != idflow.RunFailed || got.Attempt != 1 || got.Error != "bad arguments" {
		t.Fatalf("run: %s at attempt %d (%q); want failed at attempt 1", got.Status, got.Attempt, got.Error)
	}
	evs := r.history(t, alice, run.ID)
	ownedBy(t, evs, "alice")
	if calls.Load() != 1 || count(evs, idflow.EventRunStarted, "") != 1 || count(evs, idflow.EventStepStarted, "after") != 0 {
		t.Fatalf("%d calls; history %+v", calls.Load(), evs)
	}
	last := evs[len(evs)-1]
	if last.Type != idflow.EventRunFailed || last.StepID != "refuses" || string(last.Data) != `{"error":"bad arguments"}` {
		t.Fatalf("last event %+v; want run.failed of step refuses", last)
	}
}

// TestPolicyClosedToolFailsTheStep: a tool the policy closes to the run's
// owner (tool.<name>, on the workflow channel as on every other) fails its
// step at once, never runs, and is audited; another user the rule names
// runs the same workflow.
func TestPolicyClosedToolFailsTheStep(t *testing.T) {
	pol, err := authz.Parse([]byte(`{"features": {"tool.count": {"roles": ["counter"]}, "mcp.tool.add_fact": {"roles": ["counter"]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	r := newPolicyRig(t, runner.Config{MaxAttempts: 3}, 2, pol)
	var calls atomic.Int32
	r.tools.Add("count", func(context.Context, idflow.Principal, json.RawMessage) (any, error) {
		calls.Add(1)
		return "counted", nil
	})
	for _, tool := range []string{"count", "add_fact"} {
		run := r.start(t, alice, r.workflow(t, alice, idflow.Step{ID: "s", Type: idflow.StepTool, Tool: tool, Args: json.RawMessage(`{"content":"x"}`)}))
		if ev := r.waitJob(t, run.ID, 0); ev.Kind != river.EventKindJobCancelled || ev.Job.Attempt != 1 {
			t.Fatalf("%s: job %s at attempt %d; want cancelled at once", tool, ev.Kind, ev.Job.Attempt)
		}
		if got := r.run(t, alice, run.ID); got.Status != idflow.RunFailed || !strings.Contains(got.Error, "do not open") {
			t.Fatalf("%s: run %s %q; want failed, refused by the policy", tool, got.Status, got.Error)
		}
	}
	if calls.Load() != 0 {
		t.Fatalf("the closed tool ran %d times", calls.Load())
	}
	if facts, _ := r.svc.ListFacts(context.Background(), alice, idflow.Page{}); len(facts.Items) != 0 {
		t.Fatalf("the closed add_fact stored %+v", facts.Items)
	}
	events, err := r.svc.ListAudit(context.Background(), alice, idflow.Page{Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(events.Items, func(e idflow.AuditEvent) bool {
		return e.Action == "tool.call" && e.Resource == "tool/count" && e.Outcome == idflow.OutcomeDenied && strings.HasPrefix(e.Detail, "channel=workflow ")
	}) {
		t.Fatalf("the refused step was not audited: %+v", events.Items)
	}
	counter := authtest.User("carl", "t-one", "counter")
	run := r.start(t, counter, r.workflow(t, counter, idflow.Step{ID: "s", Type: idflow.StepTool, Tool: "count"}))
	r.waitJob(t, run.ID, 0)
	if got := r.run(t, counter, run.ID); got.Status != idflow.RunSucceeded || string(got.Output) != `"counted"` || calls.Load() != 1 {
		t.Fatalf("the counter role's run: %s %s (%q)", got.Status, got.Output, got.Error)
	}
}

// TestJobWithoutItsOwnerNeverRuns: a job whose snapshot has no user, or
// names a user who does not own the run, is cancelled without running a
// step or touching the run.
func TestJobWithoutItsOwnerNeverRuns(t *testing.T) {
	r := newRig(t, runner.Config{RunsPerUser: 1}, 2)
	r.holdSlots(t, alice, 1)
	var calls atomic.Int32
	r.tools.Add("count", func(context.Context, idflow.Principal, json.RawMessage) (any, error) {
		calls.Add(1)
		return nil, nil
	})
	wf := r.workflow(t, alice, idflow.Step{ID: "count", Type: idflow.StepTool, Tool: "count"})
	for name, owner := range map[string]idflow.Snapshot{
		"no user":       {},
		"blank user":    {UserID: "  ", TenantID: "t-one"},
		"another owner": bob.Snapshot(),
	} {
		t.Run(name, func(t *testing.T) {
			// The run waits (alice's slot is held), without a job; the
			// job is inserted by hand.
			run, err := r.db.CreateRun(context.Background(), alice, idflow.Run{
				ID: idflow.NewID(idflow.PrefixRun), TenantID: "t-one", WorkflowID: wf.ID, Definition: wf.Definition,
			})
			if err != nil {
				t.Fatal(err)
			}
			res, err := r.client.Insert(context.Background(), runner.Args{RunID: run.ID, Owner: owner}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ev := r.waitJob(t, run.ID, res.Job.ID)
			if ev.Kind != river.EventKindJobCancelled || ev.Job.Attempt != 1 {
				t.Fatalf("job: %s at attempt %d; want cancelled at once", ev.Kind, ev.Job.Attempt)
			}
			if got := r.run(t, alice, run.ID); got.Status != idflow.RunQueued || got.Attempt != 0 {
				t.Fatalf("the run is %s at attempt %d; want untouched (queued)", got.Status, got.Attempt)
			}
			if evs := r.history(t, alice, run.ID); len(evs) != 1 || evs[0].Type != idflow.EventRunQueued {
				t.Fatalf("history %+v; want only run.queued", evs)
			}
			if calls.Load() != 0 {
				t.Fatalf("the tool ran %d times", calls.Load())
			}
		})
	}
}

// TestEveryEventNamesItsOwner runs alice's and bob's runs concurrently,
// with tools asked to act for the other user, and checks every stored and
// every published event.
func TestEveryEventNamesItsOwner(t *testing.T) {
	r := newRig(t, runner.Config{}, 8)
	ctx := context.Background()
	type sub struct {
		owner string
		s     idflow.Subscription
		runID string
	}
	var subs []sub
	var runs []sub
	for _, u := range []struct {
		p     idflow.Principal
		other string
	}{{alice, "bob"}, {bob, "alice"}} {
		args := json.RawMessage(`{"user_id":"` + u.other + `","content":"from a run","query":"run"}`)
		wf := r.workflow(t, u.p,
			idflow.Step{ID: "who", Type: idflow.StepTool, Tool: "whoami", Args: args},
			idflow.Step{ID: "add", Type: idflow.StepTool, Tool: "add_fact", Args: args},
			idflow.Step{ID: "find", Type: idflow.StepTool, Tool: "search_memory", Args: args},
			idflow.Step{ID: "recall", Type: idflow.StepMemorySearch, Query: "run"},
			idflow.Step{ID: "say", Type: idflow.StepPrompt, Prompt: "hi {{previous}}"},
			idflow.Step{ID: "wait", Type: idflow.StepWait, Ms: 10})
		for i := 0; i < 4; i++ {
			run := r.start(t, u.p, wf)
			s, err := r.bus.Subscribe(ctx, u.p, run.ID)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			subs = append(subs, sub{u.p.UserID, s, run.ID})
			runs = append(runs, sub{owner: u.p.UserID, runID: run.ID})
		}
	}
	for _, s := range runs {
		p := alice
		if s.owner == "bob" {
			p = bob
		}
		r.waitJob(t, s.runID, 0)
		if got := r.run(t, p, s.runID); got.Status != idflow.RunSucceeded || got.UserID != s.owner {
			t.Fatalf("run %s: %s of %s (%s)", s.runID, got.Status, got.UserID, got.Error)
		}
		evs := r.history(t, p, s.runID)
		ownedBy(t, evs, s.owner)
		for _, e := range evs {
			if e.Type != idflow.EventStepOutput {
				continue
			}
			var out struct {
				UserID string `json:"user_id"`
				Items  []struct {
					Fact idflow.Fact `json:"fact"`
				} `json:"items"`
			}
			_ = json.Unmarshal(e.Data, &out)
			if out.UserID != "" && out.UserID != s.owner {
				t.Fatalf("step %s of %s's run acted as %q: %s", e.StepID, s.owner, out.UserID, e.Data)
			}
			for _, it := range out.Items {
				if it.Fact.UserID != s.owner {
					t.Fatalf("step %s of %s's run found %q's fact", e.StepID, s.owner, it.Fact.UserID)
				}
			}
		}
		// Another user's Principal sees nothing of the run.
		other := bob
		if s.owner == "bob" {
			other = alice
		}
		if _, err := r.db.ListEvents(ctx, other, s.runID, 0, 10); idflow.ErrorCode(err) != idflow.ENOTFOUND {
			t.Fatalf("the other user listing %s's events: %v; want not found", s.owner, err)
		}
	}
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range s.s.Events() {
				if e.UserID != s.owner || e.RunID != s.runID {
					t.Errorf("%s's subscription to %s received %+v", s.owner, s.runID, e)
				}
				if e.Terminal() {
					return
				}
			}
			t.Errorf("%s's subscription to %s ended without a terminal event (dropped %v)", s.owner, s.runID, s.s.Dropped())
		}()
	}
	wg.Wait()
}

// TestEndedRunGetsItsTerminalEvent: a process killed between recording a
// run's end and writing its terminal event leaves a run that ended without
// the event its WebSocket subscribers wait for. When the run's job comes
// back (rescued after the restart), the event is written, exactly once:
// at once when the end is older than the grace its writer had, on the last
// attempt otherwise.
func TestEndedRunGetsItsTerminalEvent(t *testing.T) {
	r := newRig(t, runner.Config{MaxAttempts: 3, RunsPerUser: 1}, 2)
	ctx := context.Background()
	wf := r.workflow(t, alice, idflow.Step{ID: "who", Type: idflow.StepTool, Tool: "whoami"})
	r.holdSlots(t, alice, 1) // the runs below wait, without a job: the test inserts it
	for _, tc := range []struct {
		update  idflow.RunUpdate
		event   string
		data    string
		aged    bool // the end was recorded a minute ago
		attempt int  // the attempt that writes the event
	}{
		{idflow.RunUpdate{Status: idflow.RunSucceeded, Output: json.RawMessage(`{"reply":"done"}`)}, idflow.EventRunCompleted, `{"output":{"reply":"done"}}`, true, 1},
		{idflow.RunUpdate{Status: idflow.RunFailed, Error: "step failed"}, idflow.EventRunFailed, `{"error":"step failed"}`, true, 1},
		{idflow.RunUpdate{Status: idflow.RunCancelled}, idflow.EventRunCancelled, `{"by":"alice"}`, true, 1},
		{idflow.RunUpdate{Status: idflow.RunCancelled}, idflow.EventRunCancelled, `{"by":"alice"}`, false, 3},
	} {
		t.Run(fmt.Sprintf("%s aged=%v", tc.update.Status, tc.aged), func(t *testing.T) {
			run, err := r.db.CreateRun(ctx, alice, idflow.Run{ID: idflow.NewID(idflow.PrefixRun), TenantID: "t-one", WorkflowID: wf.ID, Definition: wf.Definition})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.db.UpdateRun(ctx, alice, run.ID, idflow.RunUpdate{Status: idflow.RunRunning, Attempt: 1}); err != nil {
				t.Fatal(err)
			}
			if _, err := r.db.UpdateRun(ctx, alice, run.ID, tc.update); err != nil { // … and then the process died
				t.Fatal(err)
			}
			if tc.aged {
				if _, err := r.db.SQL().ExecContext(ctx, `UPDATE runs SET finished_at = ? WHERE id = ?`, time.Now().Add(-time.Minute).UnixNano(), run.ID); err != nil {
					t.Fatal(err)
				}
			}
			res, err := r.client.Insert(ctx, runner.Args{RunID: run.ID, Owner: alice.Snapshot()}, &river.InsertOpts{MaxAttempts: 3})
			if err != nil {
				t.Fatal(err)
			}
			ev := r.waitJob(t, run.ID, res.Job.ID)
			if ev.Kind != river.EventKindJobCompleted || ev.Job.Attempt != tc.attempt {
				t.Fatalf("job: %s at attempt %d; want completed at attempt %d", ev.Kind, ev.Job.Attempt, tc.attempt)
			}
			evs := r.history(t, alice, run.ID)
			ownedBy(t, evs, "alice")
			last := evs[len(evs)-1]
			if count(evs, tc.event, "") != 1 || last.Type != tc.event || string(last.Data) != tc.data {
				t.Fatalf("history %+v; want one %s with %s, last", evs, tc.event, tc.data)
			}
			if count(evs, idflow.EventStepStarted, "") != 0 {
				t.Fatalf("a step ran in a run that had ended: %+v", evs)
			}
			if got := r.run(t, alice, run.ID); got.Status != tc.update.Status {
				t.Fatalf("status %s; want %s unchanged", got.Status, tc.update.Status)
			}
		})
	}
	t.Run("ended with its event", func(t *testing.T) {
		run := r.start(t, bob, r.workflow(t, bob, idflow.Step{ID: "who", Type: idflow.StepTool, Tool: "whoami"}))
		r.waitJob(t, run.ID, 0)
		// The same job once more (as after a rescue): nothing is added.
		before := r.history(t, bob, run.ID)
		res, err := r.client.Insert(ctx, runner.Args{RunID: run.ID, Owner: bob.Snapshot()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if ev := r.waitJob(t, run.ID, res.Job.ID); ev.Kind != river.EventKindJobCompleted || ev.Job.Attempt != 1 {
			t.Fatalf("job: %s at attempt %d", ev.Kind, ev.Job.Attempt)
		}
		if after := r.history(t, bob, run.ID); len(after) != len(before) {
			t.Fatalf("%d events after re-running an ended job; %d before", len(after), len(before))
		}
	})
}

// gate is a tool that holds each call until the test lets one through,
// and records how many calls of each user it holds at once.
type gate struct {
	pass chan struct{}
	mu   sync.Mutex
	in   map[string]int // calls inside, per user
	max  map[string]int // most calls inside at once, per user
}

func newGate() *gate {
	return &gate{pass: make(chan struct{}), in: map[string]int{}, max: map[string]int{}}
}

func (g *gate) tool(ctx context.Context, p idflow.Principal, _ json.RawMessage) (any, error) {
	g.mu.Lock()
	g.in[p.UserID]++
	g.max[p.UserID] = max(g.max[p.UserID], g.in[p.UserID])
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.in[p.UserID]--
		g.mu.Unlock()
	}()
	select {
	case <-g.pass:
		return "passed", nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

func (g *gate) most(user string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.max[user]
}

// letOne lets one held call through.
func (g *gate) letOne(t testing.TB) {
	t.Helper()
	select {
	case g.pass <- struct{}{}:
	case <-time.After(30 * time.Second):
		t.Fatal("no call reached the gate within 30s")
	}
}

// waitEvent waits for an event of type typ of p's run: stored already, or
// arriving on s (subscribed before the history is read, so nothing falls
// between the two).
func (r *rig) waitEvent(t testing.TB, p idflow.Principal, s idflow.Subscription, runID, typ string) {
	t.Helper()
	if count(r.history(t, p, runID), typ, "") > 0 {
		return
	}
	deadline := time.After(30 * time.Second)
	for {
		select {
		case e, ok := <-s.Events():
			if !ok {
				t.Fatalf("run %s: the subscription ended before %s", runID, typ)
			}
			if e.Type == typ {
				return
			}
		case <-deadline:
			t.Fatalf("run %s: no %s within 30s", runID, typ)
		}
	}
}

// TestRunsWaitTheirTurnPerUser: with RunsPerUser 2 and 8 workers, alice's
// six runs execute two at a time, the others wait (queued, no job) and
// start in the order they were started as hers end; a waiting run can be
// cancelled and is skipped; bob's run is not held behind alice's.
func TestRunsWaitTheirTurnPerUser(t *testing.T) {
	r := newRig(t, runner.Config{RunsPerUser: 2}, 8)
	ctx := context.Background()
	g := newGate()
	r.tools.Add("gate", g.tool)
	wf := r.workflow(t, alice, idflow.Step{ID: "gate", Type: idflow.StepTool, Tool: "gate"})
	var runs []idflow.Run
	subs := map[string]idflow.Subscription{}
	for range 6 {
		run := r.start(t, alice, wf)
		s, err := r.bus.Subscribe(ctx, alice, run.ID)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		runs, subs[run.ID] = append(runs, run), s
	}
	for _, run := range runs[:2] {
		r.waitEvent(t, alice, subs[run.ID], run.ID, idflow.EventStepStarted)
	}

	// bob's run completes while alice's two hold the gate and four wait.
	bobs := r.start(t, bob, r.workflow(t, bob, idflow.Step{ID: "who", Type: idflow.StepTool, Tool: "whoami"}))
	if ev := r.waitJob(t, bobs.ID, 0); ev.Kind != river.EventKindJobCompleted {
		t.Fatalf("bob's job: %s", ev.Kind)
	}
	if got := r.run(t, bob, bobs.ID); got.Status != idflow.RunSucceeded {
		t.Fatalf("bob's run: %s", got.Status)
	}
	for _, run := range runs[2:] {
		if got := r.run(t, alice, run.ID); got.Status != idflow.RunQueued || got.StartedAt != nil {
			t.Fatalf("alice's run %s is %s (started %v) while two of hers hold their slots; want queued", run.ID, got.Status, got.StartedAt)
		}
		if evs := r.history(t, alice, run.ID); len(evs) != 1 || evs[0].Type != idflow.EventRunQueued {
			t.Fatalf("waiting run's history: %+v; want run.queued only", evs)
		}
	}

	// A waiting run is cancelled: it ends at once and never starts.
	cancelled, err := r.runs.Cancel(ctx, alice, runs[3].ID)
	if err != nil || cancelled.Status != idflow.RunCancelled {
		t.Fatalf("cancel a waiting run: %+v, %v", cancelled, err)
	}
	r.waitEvent(t, alice, subs[runs[3].ID], runs[3].ID, idflow.EventRunCancelled)

	// Each end admits alice's oldest waiting run, and only that one.
	for i, next := range []int{2, 4, 5} {
		g.letOne(t)
		r.waitEvent(t, alice, subs[runs[next].ID], runs[next].ID, idflow.EventRunStarted)
		for _, later := range []int{2, 4, 5}[i+1:] {
			if got := r.run(t, alice, runs[later].ID); got.Status != idflow.RunQueued || got.StartedAt != nil {
				t.Fatalf("run %d is %s before run %d, started earlier, was admitted", later, got.Status, next)
			}
		}
	}
	for range 2 {
		g.letOne(t)
	}
	for _, run := range runs {
		want := idflow.RunSucceeded
		if run.ID == runs[3].ID {
			want = idflow.RunCancelled
		} else {
			r.waitEvent(t, alice, subs[run.ID], run.ID, idflow.EventRunCompleted)
		}
		got := r.run(t, alice, run.ID)
		if got.Status != want {
			t.Fatalf("run %s: %s; want %s", run.ID, got.Status, want)
		}
		if evs := r.history(t, alice, run.ID); run.ID == runs[3].ID && (count(evs, idflow.EventRunStarted, "") != 0 || len(evs) != 2) {
			t.Fatalf("the cancelled waiting run's history: %+v; want run.queued, run.cancelled", evs)
		}
	}
	if n := g.most("alice"); n != 2 {
		t.Fatalf("alice had %d runs at the gate at once; want 2 (RunsPerUser)", n)
	}
}

// TestStrandedRunIsFailedAndFreesItsSlot: a run whose job ends without
// ending it — here a tool panics on the last attempt, and River discards
// the job — would hold its owner's slot for ever. The periodic sweep fails
// it (stored and published run.failed), and the owner's next run goes.
func TestStrandedRunIsFailedAndFreesItsSlot(t *testing.T) {
	r := newRig(t, runner.Config{RunsPerUser: 1, MaxAttempts: 1, SweepInterval: 100 * time.Millisecond}, 2)
	ctx := context.Background()
	r.tools.Add("boom", func(context.Context, idflow.Principal, json.RawMessage) (any, error) { panic("a bug in a tool") })
	stuck := r.start(t, alice, r.workflow(t, alice, idflow.Step{ID: "boom", Type: idflow.StepTool, Tool: "boom"}))
	sub, err := r.bus.Subscribe(ctx, alice, stuck.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	next := r.start(t, alice, r.workflow(t, alice, idflow.Step{ID: "who", Type: idflow.StepTool, Tool: "whoami"}))
	if ev := r.waitJob(t, stuck.ID, 0); ev.Kind != river.EventKindJobFailed || ev.Job.State != rivertype.JobStateDiscarded {
		t.Fatalf("the panicking run's job: %s %s; want discarded", ev.Kind, ev.Job.State)
	}
	r.waitEvent(t, alice, sub, stuck.ID, idflow.EventRunFailed)
	got := r.run(t, alice, stuck.ID)
	if got.Status != idflow.RunFailed || got.Error != sqlstore.RunStrandedError || got.FinishedAt == nil {
		t.Fatalf("stranded run: %s %q; want failed, %q", got.Status, got.Error, sqlstore.RunStrandedError)
	}
	evs := r.history(t, alice, stuck.ID)
	ownedBy(t, evs, "alice")
	if last := evs[len(evs)-1]; last.Type != idflow.EventRunFailed || count(evs, idflow.EventRunFailed, "") != 1 {
		t.Fatalf("stranded run's history: %+v; want one run.failed, last", evs)
	}
	if ev := r.waitJob(t, next.ID, 0); ev.Kind != river.EventKindJobCompleted {
		t.Fatalf("the next run's job: %s", ev.Kind)
	}
	if got := r.run(t, alice, next.ID); got.Status != idflow.RunSucceeded {
		t.Fatalf("the next run: %s", got.Status)
	}
	// A healthy run is never swept.
	g := newGate()
	r.tools.Add("gate", g.tool)
	held := r.start(t, bob, r.workflow(t, bob, idflow.Step{ID: "gate", Type: idflow.StepTool, Tool: "gate"}))
	heldSub, err := r.bus.Subscribe(ctx, bob, held.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer heldSub.Close()
	r.waitEvent(t, bob, heldSub, held.ID, idflow.EventStepStarted)
	if evs, err := r.db.FailStrandedRuns(ctx, 10); err != nil || len(evs) != 0 {
		t.Fatalf("sweep with a healthy run: %+v, %v; want nothing", evs, err)
	}
	g.letOne(t)
	r.waitEvent(t, bob, heldSub, held.ID, idflow.EventRunCompleted)
}
