package storetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/internal/sqlstore"
)

// enqueued records what a RunQueue asked to enqueue, in order.
type enqueued struct {
	mu     sync.Mutex
	runs   []string
	owners []idflow.Snapshot
	fail   bool
}

func (e *enqueued) enqueue(_ context.Context, runID string, owner idflow.Snapshot) (int64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fail {
		return 0, errors.New("enqueue refused")
	}
	e.runs = append(e.runs, runID)
	e.owners = append(e.owners, owner)
	return int64(len(e.runs)), nil
}

func (e *enqueued) all() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.runs)
}

func (e *enqueued) setFail(v bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fail = v
}

// RunAdmission is the conformance suite of sqlstore.RunQueue's admission
// control: at most PerUser runs of one user are admitted (enqueued) at once,
// the others wait in the order they were started, an ending run admits the
// owner's next one, a user's queue never delays another user's runs, and
// this holds under concurrent starts and ends.
func RunAdmission[TTx any](t *testing.T, open func(t *testing.T) Queue[TTx]) {
	setup := func(t *testing.T, perUser int) (Queue[TTx], *enqueued) {
		t.Helper()
		s := open(t)
		e := &enqueued{}
		s.SetRunAdmission(sqlstore.RunAdmission[TTx]{PerUser: perUser,
			Enqueue: func(ctx context.Context, _ TTx, runID string, owner idflow.Snapshot) (int64, error) {
				return e.enqueue(ctx, runID, owner)
			}})
		return s, e
	}
	start := func(t *testing.T, s Queue[TTx], p idflow.Principal, wf idflow.Workflow) (idflow.Run, error) {
		t.Helper()
		return s.CreateRun(t.Context(), p, idflow.Run{TenantID: p.TenantID, WorkflowID: wf.ID, Definition: wf.Definition})
	}
	workflow := func(t *testing.T, s idflow.Store, p idflow.Principal) idflow.Workflow {
		t.Helper()
		return must(s.CreateWorkflow(t.Context(), p, idflow.Workflow{Name: "wf", Definition: idflow.Definition{
			Steps: []idflow.Step{{ID: "a", Type: idflow.StepWait, Ms: 1}}}}))(t)
	}
	end := func(t *testing.T, s idflow.Store, p idflow.Principal, id, status string) {
		t.Helper()
		if status != idflow.RunCancelled {
			must(s.UpdateRun(t.Context(), p, id, idflow.RunUpdate{Status: idflow.RunRunning, Attempt: 1}))(t)
		}
		must(s.UpdateRun(t.Context(), p, id, idflow.RunUpdate{Status: status}))(t)
	}
	wantEnqueued := func(t *testing.T, e *enqueued, want ...string) {
		t.Helper()
		if got := e.all(); !slices.Equal(got, want) {
			t.Fatalf("enqueued %v; want %v", got, want)
		}
	}

	t.Run("OrderPerUser", func(t *testing.T) {
		s, e := setup(t, 2)
		wfA, wfB := workflow(t, s, alice), workflow(t, s, bob)
		var a []string
		for range 5 {
			run := must(start(t, s, alice, wfA))(t)
			if run.Status != idflow.RunQueued {
				t.Fatalf("a started run is %s; want queued", run.Status)
			}
			a = append(a, run.ID)
		}
		wantEnqueued(t, e, a[0], a[1])
		for _, id := range a[2:] {
			// A waiting run shows queued, with its run.queued event.
			if got := must(s.GetRun(t.Context(), alice, id))(t); got.Status != idflow.RunQueued {
				t.Fatalf("waiting run is %s; want queued", got.Status)
			}
			if evs := must(s.ListEvents(t.Context(), alice, id, 0, 10))(t); len(evs) != 1 || evs[0].Type != idflow.EventRunQueued {
				t.Fatalf("waiting run's events: %+v; want run.queued", evs)
			}
		}
		for i, o := range e.owners {
			if o.UserID != "alice" || o.TenantID != "t-one" {
				t.Fatalf("job %d carries %+v; want alice's snapshot", i, o)
			}
		}
		// bob's run does not wait behind alice's.
		b := must(start(t, s, bob, wfB))(t)
		wantEnqueued(t, e, a[0], a[1], b.ID)

		// Running does not free a slot; ending does, for the owner's oldest.
		must(s.UpdateRun(t.Context(), alice, a[0], idflow.RunUpdate{Status: idflow.RunRunning, Attempt: 1}))(t)
		wantEnqueued(t, e, a[0], a[1], b.ID)
		must(s.UpdateRun(t.Context(), alice, a[0], idflow.RunUpdate{Status: idflow.RunSucceeded}))(t)
		wantEnqueued(t, e, a[0], a[1], b.ID, a[2])
		// A waiting run can be cancelled; it is never admitted.
		end(t, s, alice, a[3], idflow.RunCancelled)
		wantEnqueued(t, e, a[0], a[1], b.ID, a[2])
		// bob's end admits none of alice's runs.
		end(t, s, bob, b.ID, idflow.RunFailed)
		wantEnqueued(t, e, a[0], a[1], b.ID, a[2])
		end(t, s, alice, a[1], idflow.RunFailed)
		wantEnqueued(t, e, a[0], a[1], b.ID, a[2], a[4])
		end(t, s, alice, a[2], idflow.RunCancelled)
		end(t, s, alice, a[4], idflow.RunSucceeded)
		wantEnqueued(t, e, a[0], a[1], b.ID, a[2], a[4])
		if got := must(s.GetRun(t.Context(), alice, a[3]))(t); got.Status != idflow.RunCancelled || got.StartedAt != nil {
			t.Fatalf("cancelled waiting run: %+v", got)
		}
		// Every slot is free again.
		c := must(start(t, s, alice, wfA))(t)
		wantEnqueued(t, e, a[0], a[1], b.ID, a[2], a[4], c.ID)
	})

	t.Run("EnqueueFailureWritesNothing", func(t *testing.T) {
		s, e := setup(t, 1)
		wf := workflow(t, s, alice)
		e.setFail(true)
		_, err := start(t, s, alice, wf)
		wantCode(t, err, idflow.EINTERNAL)
		if l := must(s.ListRuns(t.Context(), alice, idflow.Page{}))(t); len(l.Items) != 0 {
			t.Fatalf("a run was recorded although its job was not: %+v", l.Items)
		}
		e.setFail(false)
		first := must(start(t, s, alice, wf))(t)
		second := must(start(t, s, alice, wf))(t) // waits
		must(s.UpdateRun(t.Context(), alice, first.ID, idflow.RunUpdate{Status: idflow.RunRunning, Attempt: 1}))(t)
		e.setFail(true)
		_, err = s.UpdateRun(t.Context(), alice, first.ID, idflow.RunUpdate{Status: idflow.RunSucceeded})
		wantCode(t, err, idflow.EINTERNAL)
		if got := must(s.GetRun(t.Context(), alice, first.ID))(t); got.Status != idflow.RunRunning {
			t.Fatalf("the end was recorded although the next run was not admitted: %s", got.Status)
		}
		e.setFail(false)
		must(s.UpdateRun(t.Context(), alice, first.ID, idflow.RunUpdate{Status: idflow.RunSucceeded}))(t)
		wantEnqueued(t, e, first.ID, second.ID)
	})

	t.Run("Concurrent", func(t *testing.T) {
		const perUser, n = 2, 16
		s, e := setup(t, perUser)
		wf := workflow(t, s, alice)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Go(func() {
				if _, err := start(t, s, alice, wf); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// Creation order: the order they must be admitted in.
		list := must(s.ListRuns(t.Context(), alice, idflow.Page{Limit: 200}))(t).Items
		if len(list) != n {
			t.Fatalf("%d runs; want %d", len(list), n)
		}
		slices.SortFunc(list, func(a, b idflow.Run) int {
			if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
				return c
			}
			return cmp.Compare(a.ID, b.ID)
		})
		var order []string
		for _, r := range list {
			order = append(order, r.ID)
		}
		wantEnqueued(t, e, order[:perUser]...)
		// End the admitted runs concurrently, round after round.
		ended := 0
		for ended < n {
			admitted := e.all()
			batch := admitted[ended:]
			for _, id := range batch {
				must(s.UpdateRun(t.Context(), alice, id, idflow.RunUpdate{Status: idflow.RunRunning, Attempt: 1}))(t)
			}
			errs := make(chan error, len(batch))
			for _, id := range batch {
				wg.Go(func() {
					if _, err := s.UpdateRun(t.Context(), alice, id, idflow.RunUpdate{Status: idflow.RunSucceeded}); err != nil {
						errs <- fmt.Errorf("end %s: %w", id, err)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			ended += len(batch)
			want := min(ended+perUser, n)
			wantEnqueued(t, e, order[:want]...)
		}
	})
}
