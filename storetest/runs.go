package storetest

import (
	"encoding/json"
	"testing"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/internal/sqlstore"
)

// Queue is a backend as the run suites open it: an idflow.Store that is
// also the sqlstore.RunQueue the runner drives, TTx being its transaction
// type. Runs are only ever created through the queue.
type Queue[TTx any] interface {
	idflow.Store
	sqlstore.RunQueue[TTx]
}

// RunRuns is the conformance suite of idflow.RunStore. No admission is set:
// the runs it creates wait.
func RunRuns[TTx any](t *testing.T, open func(t *testing.T) Queue[TTx]) {
	newRun := func(t *testing.T, s Queue[TTx], p idflow.Principal) idflow.Run {
		t.Helper()
		wf := must(s.CreateWorkflow(t.Context(), p, idflow.Workflow{Name: "wf", Definition: idflow.Definition{
			Steps: []idflow.Step{{ID: "a", Type: idflow.StepWait, Ms: 1}}}}))(t)
		return must(s.CreateRun(t.Context(), p, idflow.Run{TenantID: p.TenantID, WorkflowID: wf.ID,
			Definition: wf.Definition, Input: json.RawMessage(`{"x":1}`)}))(t)
	}

	t.Run("Lifecycle", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		run := newRun(t, s, alice)
		if run.UserID != "alice" || run.Status != idflow.RunQueued || run.ID == "" {
			t.Fatalf("created %+v", run)
		}
		evs := must(s.ListEvents(ctx, alice, run.ID, 0, 100))(t)
		if len(evs) != 1 || evs[0].Type != idflow.EventRunQueued || evs[0].Seq != 1 || evs[0].UserID != "alice" {
			t.Fatalf("events after create: %+v", evs)
		}
		got := must(s.UpdateRun(ctx, alice, run.ID, idflow.RunUpdate{Status: idflow.RunRunning, Attempt: 1}))(t)
		if got.Status != idflow.RunRunning || got.StartedAt == nil || got.Attempt != 1 {
			t.Fatalf("running: %+v", got)
		}
		for i := 0; i < 3; i++ {
			e := must(s.AppendEvent(ctx, alice, idflow.Event{RunID: run.ID, Type: idflow.EventStepOutput, StepID: "a",
				UserID: "mallory", Data: json.RawMessage(`{"n":1}`)}))(t)
			if e.UserID != "alice" {
				t.Fatalf("event owner %q: the store must take it from the Principal", e.UserID)
			}
			if e.Seq != int64(i+2) {
				t.Fatalf("seq %d, want %d", e.Seq, i+2)
			}
		}
		after := must(s.ListEvents(ctx, alice, run.ID, 2, 100))(t)
		if len(after) != 2 || after[0].Seq != 3 {
			t.Fatalf("after seq 2: %+v", after)
		}
		done := must(s.UpdateRun(ctx, alice, run.ID, idflow.RunUpdate{Status: idflow.RunSucceeded, Output: json.RawMessage(`"ok"`)}))(t)
		if done.FinishedAt == nil || string(done.Output) != `"ok"` {
			t.Fatalf("succeeded: %+v", done)
		}
		wantUTC(t, "run times", done.CreatedAt, *done.StartedAt, *done.FinishedAt, evs[0].At)
		_, err := s.UpdateRun(ctx, alice, run.ID, idflow.RunUpdate{Status: idflow.RunCancelled})
		wantCode(t, err, idflow.ECONFLICT)
		list := must(s.ListRuns(ctx, alice, idflow.Page{}))(t)
		if len(list.Items) != 1 || list.Items[0].ID != run.ID {
			t.Fatalf("list: %+v", list)
		}
		_, err = s.UpdateRun(ctx, alice, run.ID, idflow.RunUpdate{Status: "bogus"})
		wantCode(t, err, idflow.EINVALID)
	})

	t.Run("Isolation", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		run := newRun(t, s, alice)
		for _, p := range []idflow.Principal{bob, carol, admin} {
			_, err := s.GetRun(ctx, p, run.ID)
			wantCode(t, err, idflow.ENOTFOUND)
			_, err = s.ListEvents(ctx, p, run.ID, 0, 10)
			wantCode(t, err, idflow.ENOTFOUND)
			_, err = s.AppendEvent(ctx, p, idflow.Event{RunID: run.ID, Type: idflow.EventRunFailed})
			wantCode(t, err, idflow.ENOTFOUND)
			_, err = s.UpdateRun(ctx, p, run.ID, idflow.RunUpdate{Status: idflow.RunCancelled})
			wantCode(t, err, idflow.ENOTFOUND)
			if l := must(s.ListRuns(ctx, p, idflow.Page{}))(t); len(l.Items) != 0 {
				t.Fatalf("%s lists alice's runs: %+v", p.UserID, l.Items)
			}
		}
		// bob cannot start a run of alice's workflow.
		_, err := s.CreateRun(ctx, bob, idflow.Run{WorkflowID: run.WorkflowID, Definition: run.Definition})
		wantCode(t, err, idflow.ENOTFOUND)
		_, err = s.GetRun(ctx, svc, run.ID)
		wantCode(t, err, idflow.EFORBIDDEN)
		if got := must(s.GetRun(ctx, alice, run.ID))(t); got.Status != idflow.RunQueued {
			t.Fatalf("alice's run changed: %+v", got)
		}
		if evs := must(s.ListEvents(ctx, alice, run.ID, 0, 10))(t); len(evs) != 1 {
			t.Fatalf("alice's events changed: %+v", evs)
		}
	})
}
