package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/internal/testsvc"
	"github.com/idflow/idflow/runner"
)

// runsIdentitySteps is a workflow touching everything a run can act on; every
// argument naming a user names someone else, and must be ignored.
func runsIdentitySteps(other string) []idflow.Step {
	spoof := func(extra string) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"user_id":%q,"owner":%q,"sub":%q%s}`, other, other, other, extra))
	}
	return []idflow.Step{
		{ID: "who", Type: idflow.StepTool, Tool: "whoami", Args: spoof("")},
		{ID: "recall", Type: idflow.StepMemorySearch, Query: "seedfact", Limit: 50},
		{ID: "search", Type: idflow.StepTool, Tool: "search_memory", Args: spoof(`,"query":"seedfact","limit":50`)},
		{ID: "remember", Type: idflow.StepTool, Tool: "add_fact", Args: spoof(`,"content":"seedfact written by a run"`)},
		{ID: "think", Type: idflow.StepPrompt, Prompt: "summarize {{previous}}"},
		{ID: "pause", Type: idflow.StepWait, Ms: 100},
	}
}

// runsStepOutput decodes the output of stepID: its last step.output (a
// prompt step's {"delta"} events come before it).
func runsStepOutput[T any](t *testing.T, evs []idflow.Event, stepID string) T {
	t.Helper()
	var out T
	for _, e := range slices.Backward(evs) {
		if e.Type == idflow.EventStepOutput && e.StepID == stepID {
			if err := json.Unmarshal(e.Data, &out); err != nil {
				t.Fatalf("step %s output %s: %v", stepID, e.Data, err)
			}
			return out
		}
	}
	t.Fatalf("no output of step %s:%s", stepID, runsDescribe(evs))
	return out
}

type runsScoredItems struct {
	Items []idflow.ScoredFact `json:"items"`
}

// TestRunsCarryTheirOwnersIdentity starts runs of alice and bob
// concurrently and proves that each acts only as its owner: every stored
// event names the owner, tools ignore a user id in their arguments, facts
// written by a run belong to its owner, another user's run is a 404, and a
// run's events never reach another user's WebSocket.
func TestRunsCarryTheirOwnersIdentity(t *testing.T) {
	t.Parallel()
	w := startRunsWorld(t, nil)
	type user struct{ login, token, other string }
	users := []user{{"alice", w.alice, "bob"}, {"bob", w.bob, "alice"}}
	for _, u := range users {
		runsJSON[idflow.Fact](t, w.URL, "POST", "/api/v1/facts", u.token, map[string]string{"content": "seedfact of " + u.login}, http.StatusCreated)
	}
	wfs := map[string]idflow.Workflow{}
	for _, u := range users {
		wfs[u.login] = runsWorkflow(t, w.URL, u.token, u.login+"'s workflow", runsIdentitySteps(u.other)...)
	}

	// Both users start their runs at the same time, and each watches every
	// one of their own runs on a WebSocket as soon as it is started.
	const perUser = 5
	type streamed struct {
		login, runID string
		events       []idflow.Event
		status       websocket.StatusCode
		err          error
	}
	var (
		mu       sync.Mutex
		runsOf   = map[string][]string{}
		streams  runsCollector[streamed]
		wg, ws   sync.WaitGroup
		startErr runsCollector[error]
	)
	ctx := runsCtx(t, 90*time.Second)
	for _, u := range users {
		for i := 0; i < perUser; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				run, err := runsStartErr(w.URL, u.token, wfs[u.login].ID, map[string]any{"n": i, "user_id": u.other})
				if err != nil {
					startErr.add(err)
					return
				}
				mu.Lock()
				runsOf[u.login] = append(runsOf[u.login], run.ID)
				mu.Unlock()
				ws.Add(1)
				go func() {
					defer ws.Done()
					evs, status, err := wsWatch(ctx, w.URL, run.ID, u.token)
					streams.add(streamed{login: u.login, runID: run.ID, events: evs, status: status, err: err})
				}()
			}()
		}
	}
	wg.Wait()
	for _, err := range startErr.all() {
		t.Fatal(err)
	}

	for _, u := range users {
		if len(runsOf[u.login]) != perUser {
			t.Fatalf("%s started %d runs; want %d", u.login, len(runsOf[u.login]), perUser)
		}
		for _, id := range runsOf[u.login] {
			run := runsWaitEnd(t, w.URL, u.token, id, 60*time.Second)
			if run.Status != idflow.RunSucceeded || run.UserID != u.login {
				t.Fatalf("%s's run %s: status %s, owner %s, error %q; want succeeded, owned by %s", u.login, id, run.Status, run.UserID, run.Error, u.login)
			}
			evs := runsEvents(t, w.URL, u.token, id)
			runsCheckSeq(t, evs)
			for _, e := range evs {
				if e.UserID != u.login || e.RunID != id {
					t.Fatalf("%s's run %s stored an event of user %q, run %q:%s", u.login, id, e.UserID, e.RunID, runsDescribe(evs))
				}
			}
			if evs[len(evs)-1].Type != idflow.EventRunCompleted {
				t.Fatalf("%s's run %s does not end with run.completed:%s", u.login, id, runsDescribe(evs))
			}
			who := runsStepOutput[map[string]any](t, evs, "who")
			if who["user_id"] != u.login || who["tenant_id"] != runsUsers[u.login] {
				t.Fatalf("whoami in %s's run (args naming %s) answered %v; want %s of %s", u.login, u.other, who, u.login, runsUsers[u.login])
			}
			for _, step := range []string{"recall", "search"} {
				found := runsStepOutput[runsScoredItems](t, evs, step)
				if len(found.Items) == 0 {
					t.Fatalf("%s in %s's run found nothing; want at least the seed fact", step, u.login)
				}
				for _, it := range found.Items {
					if it.Fact.UserID != u.login || strings.Contains(it.Fact.Content, u.other) {
						t.Fatalf("%s in %s's run found %+v, a fact that is not theirs", step, u.login, it.Fact)
					}
				}
			}
			if f := runsStepOutput[idflow.Fact](t, evs, "remember"); f.UserID != u.login {
				t.Fatalf("add_fact in %s's run (args naming %s) created a fact of %q", u.login, u.other, f.UserID)
			}
			if reply := runsStepOutput[map[string]string](t, evs, "think")["reply"]; !strings.HasPrefix(reply, "echo to "+u.login+":") {
				t.Fatalf("the prompt step of %s's run answered %q; want the model speaking to %s", u.login, reply, u.login)
			}
		}
	}

	// The facts the runs wrote are their owners' only.
	factsOf := map[string][]idflow.Fact{}
	for _, u := range users {
		list := runsJSON[idflow.List[idflow.Fact]](t, w.URL, "GET", "/api/v1/facts?limit=200", u.token, nil, http.StatusOK)
		for _, f := range list.Items {
			if f.UserID != u.login {
				t.Fatalf("%s's fact list holds %+v", u.login, f)
			}
			if f.Content == "seedfact written by a run" {
				factsOf[u.login] = append(factsOf[u.login], f)
			}
		}
		if len(factsOf[u.login]) != perUser {
			t.Fatalf("%s has %d facts written by runs; want %d (one per run)", u.login, len(factsOf[u.login]), perUser)
		}
	}
	for _, f := range factsOf["alice"] {
		if status, _ := runsCall(t, w.URL, "GET", "/api/v1/facts/"+f.ID, w.bob, nil); status != http.StatusNotFound {
			t.Fatalf("bob reading alice's run-written fact: %d; want 404", status)
		}
	}

	// Another user's run is a 404, byte for byte like a run that does not exist.
	const ghost = "run_doesnotexist00000000"
	for _, probe := range []struct{ method, suffix string }{{"GET", ""}, {"GET", "/events"}, {"POST", "/cancel"}} {
		wantStatus, wantBody := runsCall(t, w.URL, probe.method, "/api/v1/runs/"+ghost+probe.suffix, w.bob, nil)
		if wantStatus != http.StatusNotFound {
			t.Fatalf("%s of a missing run: %d; want 404", probe.method+probe.suffix, wantStatus)
		}
		for _, id := range runsOf["alice"] {
			for _, intruder := range []string{w.bob, w.carol} {
				status, body := runsCall(t, w.URL, probe.method, "/api/v1/runs/"+id+probe.suffix, intruder, nil)
				if status != http.StatusNotFound || string(body) != string(wantBody) {
					t.Fatalf("another user: %s /api/v1/runs/%s%s answered %d %s; want the missing-run 404 %s", probe.method, id, probe.suffix, status, body, wantBody)
				}
			}
		}
	}
	for _, id := range runsOf["alice"] { // bob's cancel attempts changed nothing
		if run := runsJSON[idflow.Run](t, w.URL, "GET", "/api/v1/runs/"+id, w.alice, nil, http.StatusOK); run.Status != idflow.RunSucceeded {
			t.Fatalf("alice's run %s is %s after bob tried to cancel it", id, run.Status)
		}
	}
	bobsList := runsJSON[idflow.List[idflow.Run]](t, w.URL, "GET", "/api/v1/runs?limit=200", w.bob, nil, http.StatusOK)
	for _, r := range bobsList.Items {
		if r.UserID != "bob" || slices.Contains(runsOf["alice"], r.ID) {
			t.Fatalf("bob's run list holds %+v", r)
		}
	}
	if len(bobsList.Items) != perUser {
		t.Fatalf("bob's run list has %d runs; want %d", len(bobsList.Items), perUser)
	}

	// Every socket saw its own run, whole, and nothing of anyone else.
	ws.Wait()
	all := streams.all()
	if len(all) != 2*perUser {
		t.Fatalf("%d streams; want %d", len(all), 2*perUser)
	}
	for _, s := range all {
		if s.err != nil {
			t.Fatalf("%s's socket on %s: %v", s.login, s.runID, s.err)
		}
		for _, e := range s.events {
			if e.UserID != s.login || e.RunID != s.runID {
				t.Fatalf("%s's socket on run %s received an event of user %q, run %q", s.login, s.runID, e.UserID, e.RunID)
			}
		}
		runsCheckSeq(t, s.events)
		if s.status != websocket.StatusNormalClosure || len(s.events) == 0 || s.events[len(s.events)-1].Type != idflow.EventRunCompleted {
			t.Fatalf("%s's socket on %s: closed %d after %d events; want 1000 after run.completed:%s", s.login, s.runID, s.status, len(s.events), runsDescribe(s.events))
		}
	}
	// And bob cannot even open a socket on alice's run.
	for _, id := range runsOf["alice"] {
		if _, resp, err := wsDial(ctx, w.URL, id, w.bob); err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
			t.Fatalf("bob dialing alice's run %s: %v (%v); want HTTP 404", id, err, runsRespStatus(resp))
		}
	}
}

// TestRunCancelAndPublish covers a run's life on one server: cancelling
// stops the worker, and a published version stays frozen.
func TestRunCancelAndPublish(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	w := startRunsWorld(t, map[string]string{"IDFLOW_DATA_DIR": dataDir})
	jobs := openRunsJobs(t, dataDir)

	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		wf := runsWorkflow(t, w.URL, w.alice, "long", idflow.Step{ID: "long", Type: idflow.StepWait, Ms: 60000},
			idflow.Step{ID: "after", Type: idflow.StepTool, Tool: "whoami"})
		run := runsStart(t, w.URL, w.alice, wf.ID, 0, nil)
		runsWaitEvent(t, w.URL, w.alice, run.ID, 30*time.Second, "the wait step started", func(e idflow.Event) bool {
			return e.Type == idflow.EventStepStarted && e.StepID == "long"
		})
		got := runsJSON[idflow.Run](t, w.URL, "POST", "/api/v1/runs/"+run.ID+"/cancel", w.alice, nil, http.StatusOK)
		if got.Status != idflow.RunCancelled {
			t.Fatalf("cancel answered status %s; want cancelled", got.Status)
		}
		// The worker has returned for good once River finalizes the job.
		if state, attempt := jobs.waitFinalized(t, run.ID, 30*time.Second); state != "completed" || attempt != 1 {
			t.Fatalf("job after cancel: %s at attempt %d; want completed at attempt 1 (the worker acknowledges the cancel)", state, attempt)
		}
		evs := runsEvents(t, w.URL, w.alice, run.ID)
		runsCheckSeq(t, evs)
		if last := evs[len(evs)-1]; last.Type != idflow.EventRunCancelled || last.UserID != "alice" {
			t.Fatalf("the history does not end with alice's run.cancelled:%s", runsDescribe(evs))
		}
		if n := runsCount(evs, idflow.EventStepCompleted, ""); n != 0 {
			t.Fatalf("%d steps completed in a run cancelled during its first step:%s", n, runsDescribe(evs))
		}
		if n := runsCount(evs, idflow.EventRunCancelled, ""); n != 1 {
			t.Fatalf("%d run.cancelled events; want 1", n)
		}
		if run := runsJSON[idflow.Run](t, w.URL, "GET", "/api/v1/runs/"+run.ID, w.alice, nil, http.StatusOK); run.Status != idflow.RunCancelled || run.FinishedAt == nil {
			t.Fatalf("after cancel the run is %s (finished_at %v); want cancelled with finished_at", run.Status, run.FinishedAt)
		}
		if status, body := runsCall(t, w.URL, "POST", "/api/v1/runs/"+run.ID+"/cancel", w.alice, nil); status != http.StatusConflict {
			t.Fatalf("cancelling again: %d %s; want 409", status, body)
		}
		// A run that already succeeded cannot be cancelled either.
		quick := runsWorkflow(t, w.URL, w.alice, "quick", idflow.Step{ID: "who", Type: idflow.StepTool, Tool: "whoami"})
		done := runsStart(t, w.URL, w.alice, quick.ID, 0, nil)
		if r := runsWaitEnd(t, w.URL, w.alice, done.ID, 30*time.Second); r.Status != idflow.RunSucceeded {
			t.Fatalf("quick run: %s", r.Status)
		}
		if status, _ := runsCall(t, w.URL, "POST", "/api/v1/runs/"+done.ID+"/cancel", w.alice, nil); status != http.StatusConflict {
			t.Fatalf("cancelling a succeeded run: %d; want 409", status)
		}
	})

	t.Run("cancel before the tool step", func(t *testing.T) {
		t.Parallel()
		// Cancelled before (or during) the first step: the tool step after
		// it never runs.
		wf := runsWorkflow(t, w.URL, w.bob, "never",
			idflow.Step{ID: "pause", Type: idflow.StepWait, Ms: 1000},
			idflow.Step{ID: "remember", Type: idflow.StepTool, Tool: "add_fact", Args: json.RawMessage(`{"content":"must not exist"}`)})
		run := runsStart(t, w.URL, w.bob, wf.ID, 0, nil)
		runsJSON[idflow.Run](t, w.URL, "POST", "/api/v1/runs/"+run.ID+"/cancel", w.bob, nil, http.StatusOK)
		jobs.waitFinalized(t, run.ID, 30*time.Second)
		evs := runsEvents(t, w.URL, w.bob, run.ID)
		if i := slices.IndexFunc(evs, func(e idflow.Event) bool { return e.Type == idflow.EventRunCancelled }); i < 0 || i != len(evs)-1 {
			t.Fatalf("want run.cancelled last:%s", runsDescribe(evs))
		}
		if runsCount(evs, idflow.EventStepStarted, "remember") != 0 {
			t.Fatalf("the tool step started after the cancel:%s", runsDescribe(evs))
		}
		facts := runsJSON[idflow.List[idflow.Fact]](t, w.URL, "GET", "/api/v1/facts?limit=200", w.bob, nil, http.StatusOK)
		for _, f := range facts.Items {
			if f.Content == "must not exist" {
				t.Fatalf("the cancelled run's tool step wrote %+v", f)
			}
		}
	})

	t.Run("publish freezes a version", func(t *testing.T) {
		t.Parallel()
		v1 := idflow.Step{ID: "say", Type: idflow.StepPrompt, Prompt: "version one says {{input}}"}
		v2 := idflow.Step{ID: "say", Type: idflow.StepPrompt, Prompt: "version two says {{input}}"}
		wf := runsWorkflow(t, w.URL, w.alice, "frozen", v1)
		pub := runsJSON[idflow.Workflow](t, w.URL, "POST", "/api/v1/workflows/"+wf.ID+"/publish", w.alice, nil, http.StatusOK)
		if pub.Version != 1 {
			t.Fatalf("first publish: version %d; want 1", pub.Version)
		}
		runsJSON[idflow.Workflow](t, w.URL, "PUT", "/api/v1/workflows/"+wf.ID, w.alice,
			map[string]any{"name": "frozen", "definition": idflow.Definition{Steps: []idflow.Step{v2}}}, http.StatusOK)

		for _, tc := range []struct {
			version int
			want    string
		}{{1, "version one says"}, {0, "version two says"}} {
			run := runsStart(t, w.URL, w.alice, wf.ID, tc.version, "hello")
			if run.WorkflowVersion != tc.version || len(run.Definition.Steps) != 1 || !strings.HasPrefix(run.Definition.Steps[0].Prompt, tc.want) {
				t.Fatalf("run of version %d: version %d, definition %+v; want %q", tc.version, run.WorkflowVersion, run.Definition, tc.want)
			}
			end := runsWaitEnd(t, w.URL, w.alice, run.ID, 30*time.Second)
			if end.Status != idflow.RunSucceeded || !strings.HasPrefix(end.Definition.Steps[0].Prompt, tc.want) {
				t.Fatalf("run of version %d ended %s with definition %+v", tc.version, end.Status, end.Definition)
			}
			reply := runsStepOutput[map[string]string](t, runsEvents(t, w.URL, w.alice, run.ID), "say")["reply"]
			if !strings.Contains(reply, tc.want+` "hello"`) {
				t.Fatalf("run of version %d replied %q; want it to contain %q", tc.version, reply, tc.want)
			}
		}
		// A version that was never published does not run, and bob cannot run alice's.
		if status, _ := runsCall(t, w.URL, "POST", "/api/v1/workflows/"+wf.ID+"/runs", w.alice, map[string]any{"version": 2}); status != http.StatusNotFound {
			t.Fatalf("running unpublished version 2: %d; want 404", status)
		}
		if status, _ := runsCall(t, w.URL, "POST", "/api/v1/workflows/"+wf.ID+"/runs", w.bob, map[string]any{"version": 1}); status != http.StatusNotFound {
			t.Fatalf("bob running alice's workflow: %d; want 404", status)
		}
	})
}

// TestRunTimeoutFailsTheRun: with IDFLOW_RUN_TIMEOUT=2s a run waiting 60 s
// fails with run.failed once, and is not retried.
func TestRunTimeoutFailsTheRun(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	w := startRunsWorld(t, map[string]string{"IDFLOW_DATA_DIR": dataDir, "IDFLOW_RUN_TIMEOUT": "2s"})
	jobs := openRunsJobs(t, dataDir)
	wf := runsWorkflow(t, w.URL, w.alice, "too slow", idflow.Step{ID: "long", Type: idflow.StepWait, Ms: 60000})
	run := runsStart(t, w.URL, w.alice, wf.ID, 0, nil)
	end := runsWaitEnd(t, w.URL, w.alice, run.ID, 30*time.Second)
	if end.Status != idflow.RunFailed || !strings.Contains(end.Error, "timed out") {
		t.Fatalf("run: status %s, error %q; want failed, timed out", end.Status, end.Error)
	}
	if state, attempt := jobs.waitFinalized(t, run.ID, 30*time.Second); state != "cancelled" || attempt != 1 {
		t.Fatalf("job: %s at attempt %d; want cancelled at attempt 1 (a timeout is not retried)", state, attempt)
	}
	evs := runsEvents(t, w.URL, w.alice, run.ID)
	runsCheckSeq(t, evs)
	if n := runsCount(evs, idflow.EventRunFailed, ""); n != 1 || evs[len(evs)-1].Type != idflow.EventRunFailed {
		t.Fatalf("want exactly one run.failed, last:%s", runsDescribe(evs))
	}
	if n := runsCount(evs, idflow.EventRunStarted, ""); n != 1 {
		t.Fatalf("run.started %d times; want 1 (no retry after a timeout):%s", n, runsDescribe(evs))
	}
	if n := runsCount(evs, idflow.EventStepCompleted, "long"); n != 0 {
		t.Fatalf("the 60 s wait completed in a run that timed out after 2 s:%s", runsDescribe(evs))
	}
	for _, e := range evs {
		if e.UserID != "alice" {
			t.Fatalf("event of %q in alice's run", e.UserID)
		}
	}
}

// TestRunSurvivesKill9 kills the server process with SIGKILL in the middle
// of a run, and while another run of the same user waits for an admission
// slot, then starts it again on the same data dir: both runs complete,
// nothing completed before the kill runs twice, the waiting run is
// admitted once a slot frees, and every event still names the owner.
func TestRunSurvivesKill9(t *testing.T) {
	t.Parallel()
	iss := authtest.NewIssuer(t)
	dataDir := t.TempDir()
	env := runsEnv(iss, map[string]string{"IDFLOW_LISTEN": freeAddr(t), "IDFLOW_DATA_DIR": dataDir})
	child := startRunsChild(t, env)
	alice := runsToken(iss, "alice", time.Hour)
	url := child.URL

	const factText = "written once, before the crash"
	crash := runsWorkflow(t, url, alice, "crash",
		idflow.Step{ID: "w1", Type: idflow.StepWait, Ms: 1500},
		idflow.Step{ID: "fact", Type: idflow.StepTool, Tool: "add_fact", Args: json.RawMessage(fmt.Sprintf(`{"content":%q,"user_id":"bob"}`, factText))},
		idflow.Step{ID: "w2", Type: idflow.StepWait, Ms: 1500},
		idflow.Step{ID: "say", Type: idflow.StepPrompt, Prompt: "done after {{previous}}"},
	)
	block := runsWorkflow(t, url, alice, "blocker", idflow.Step{ID: "hold", Type: idflow.StepWait, Ms: 600000})
	later := runsWorkflow(t, url, alice, "queued", idflow.Step{ID: "who", Type: idflow.StepTool, Tool: "whoami"})

	// The crash run and a blocker hold alice's admission slots
	// (IDFLOW_RUNS_PER_USER, default 2), so that her next run waits,
	// deterministically, until the kill.
	main := runsStart(t, url, alice, crash.ID, 0, nil)
	busy := []string{main.ID}
	for i := 1; i < runner.DefaultRunsPerUser; i++ {
		busy = append(busy, runsStart(t, url, alice, block.ID, 0, nil).ID)
	}
	for _, id := range busy {
		runsWaitEvent(t, url, alice, id, 30*time.Second, "started", func(e idflow.Event) bool { return e.Type == idflow.EventRunStarted })
	}
	queued := runsStart(t, url, alice, later.ID, 0, nil)

	// Kill once the crash run has completed its first two steps and is in
	// the middle of the third.
	runsWaitEvent(t, url, alice, main.ID, 30*time.Second, "the fact step completed", func(e idflow.Event) bool {
		return e.Type == idflow.EventStepCompleted && e.StepID == "fact"
	})
	if run := runsJSON[idflow.Run](t, url, "GET", "/api/v1/runs/"+queued.ID, alice, nil, http.StatusOK); run.Status != idflow.RunQueued {
		t.Fatalf("the queued run is %s before the kill; want queued (alice's slots are held)", run.Status)
	}
	child.kill(t)
	if ws, ok := child.cmd.ProcessState.Sys().(interface{ Signal() syscall.Signal }); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v", child.cmd.ProcessState)
	}
	before := runsReadEvents(t, dataDir, main.ID)
	if runsCount(before, idflow.EventRunCompleted, "") != 0 || runsCount(before, idflow.EventStepCompleted, "w2") != 0 {
		t.Fatalf("killed too late: the crash run had already passed w2:%s", runsDescribe(before))
	}

	env["IDFLOW_LISTEN"] = freeAddr(t)
	child = startRunsChild(t, env)
	url = child.URL

	end := runsWaitEnd(t, url, alice, main.ID, 60*time.Second)
	if end.Status != idflow.RunSucceeded || end.Attempt != 2 {
		t.Fatalf("after the restart the crash run is %s at attempt %d (%s); want succeeded at attempt 2", end.Status, end.Attempt, end.Error)
	}
	evs := runsEvents(t, url, alice, main.ID)
	runsCheckSeq(t, evs)
	if len(evs) < len(before) || !slices.EqualFunc(evs[:len(before)], before, func(a, b idflow.Event) bool { return a.Seq == b.Seq && a.Type == b.Type && a.StepID == b.StepID }) {
		t.Fatalf("the history before the kill was not kept:\nbefore:%s\nafter:%s", runsDescribe(before), runsDescribe(evs))
	}
	for _, e := range evs {
		if e.UserID != "alice" {
			t.Fatalf("event of %q in alice's resumed run:%s", e.UserID, runsDescribe(evs))
		}
	}
	for _, st := range crash.Definition.Steps {
		if n := runsCount(evs, idflow.EventStepCompleted, st.ID); n != 1 {
			t.Fatalf("step %s completed %d times; want exactly once:%s", st.ID, n, runsDescribe(evs))
		}
	}
	for _, st := range []string{"w1", "fact"} { // completed before the kill: not run again
		if n := runsCount(evs, idflow.EventStepStarted, st); n != 1 {
			t.Fatalf("step %s, completed before the kill, started %d times:%s", st, n, runsDescribe(evs))
		}
	}
	if n := runsCount(evs, idflow.EventRunStarted, ""); n != 2 {
		t.Fatalf("run.started %d times; want 2 (one per attempt):%s", n, runsDescribe(evs))
	}
	var second struct {
		Attempt      int `json:"attempt"`
		ResumedSteps int `json:"resumed_steps"`
	}
	for _, e := range evs {
		if e.Type == idflow.EventRunStarted {
			_ = json.Unmarshal(e.Data, &second)
		}
	}
	if second.Attempt != 2 || second.ResumedSteps != 2 {
		t.Fatalf("the resumed attempt reports %+v; want attempt 2 resuming after 2 steps", second)
	}
	if n := runsCount(evs, idflow.EventRunCompleted, ""); n != 1 || evs[len(evs)-1].Type != idflow.EventRunCompleted {
		t.Fatalf("want exactly one run.completed, last:%s", runsDescribe(evs))
	}
	facts := runsJSON[idflow.List[idflow.Fact]](t, url, "GET", "/api/v1/facts?limit=200", alice, nil, http.StatusOK)
	n := 0
	for _, f := range facts.Items {
		if f.Content == factText {
			n++
			if f.UserID != "alice" {
				t.Fatalf("the run's fact belongs to %q", f.UserID)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d facts %q; want exactly 1 (the tool step ran once)", n, factText)
	}

	// The crash run's end freed a slot, the blocker holds the other: the
	// run queued at the kill runs once (cancelling the blocker cannot hurt).
	for _, id := range busy[1:] {
		runsJSON[idflow.Run](t, url, "POST", "/api/v1/runs/"+id+"/cancel", alice, nil, http.StatusOK)
	}
	qEnd := runsWaitEnd(t, url, alice, queued.ID, 60*time.Second)
	if qEnd.Status != idflow.RunSucceeded {
		t.Fatalf("the run queued at the kill is %s (%s); want succeeded", qEnd.Status, qEnd.Error)
	}
	qEvs := runsEvents(t, url, alice, queued.ID)
	runsCheckSeq(t, qEvs)
	if n := runsCount(qEvs, idflow.EventRunStarted, ""); n != 1 {
		t.Fatalf("the queued run started %d times; want once:%s", n, runsDescribe(qEvs))
	}
	if who := runsStepOutput[map[string]any](t, qEvs, "who"); who["user_id"] != "alice" {
		t.Fatalf("whoami in the queued run answered %v", who)
	}
	for _, e := range qEvs {
		if e.UserID != "alice" {
			t.Fatalf("event of %q in alice's queued run", e.UserID)
		}
	}
}

// runsReadEvents reads a run's events straight from the data dir's
// database, while no server is running.
func runsReadEvents(t *testing.T, dataDir, runID string) []idflow.Event {
	t.Helper()
	db := openRunsJobs(t, dataDir).db
	rows, err := db.QueryContext(context.Background(), `SELECT seq, type, step_id, user_id FROM run_events WHERE run_id = ? ORDER BY seq`, runID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var evs []idflow.Event
	for rows.Next() {
		e := idflow.Event{RunID: runID}
		if err := rows.Scan(&e.Seq, &e.Type, &e.StepID, &e.UserID); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestRunsAreFairPerUser: one user's twelve long runs do not hold up
// another user's short run, on SQLite, on PostgreSQL, and across two
// replicas sharing PostgreSQL (and Redis, for cancels): with 8 workers per
// process, alice's runs execute at most IDFLOW_RUNS_PER_USER (2) at a time
// — across replicas too — in the order she started them, the rest wait
// queued; bob's run ends within two seconds of its start meanwhile. Not
// parallel: the two-second bound is measured without this package's other
// tests competing for the CPU.
func TestRunsAreFairPerUser(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		w := startRunsWorld(t, nil)
		runsCheckFair(t, []string{w.URL}, w.alice, w.bob)
	})
	pg := testsvc.StartPostgres(t)
	pgEnv := func(t *testing.T, extra map[string]string) map[string]string {
		db := pg.NewDatabase(t)
		env := map[string]string{"IDFLOW_DATABASE_URL": db.AppURL, "IDFLOW_MIGRATE_DATABASE_URL": db.OwnerURL}
		for k, v := range extra {
			env[k] = v
		}
		return env
	}
	t.Run("postgres", func(t *testing.T) {
		w := startRunsWorld(t, pgEnv(t, nil))
		runsCheckFair(t, []string{w.URL}, w.alice, w.bob)
	})
	t.Run("postgres two replicas", func(t *testing.T) {
		env := pgEnv(t, map[string]string{"IDFLOW_CACHE_URL": "redis://" + testsvc.StartRedis(t) + "/0"})
		w := startRunsWorld(t, env)
		other := startIdflow(t, runsEnv(w.iss, env))
		runsCheckFair(t, []string{w.URL, other.URL}, w.alice, w.bob)
	})
}

// runsCheckFair starts twelve long runs of alice through urls in turn, then
// a short run of bob through the last, and checks fairness (see
// TestRunsAreFairPerUser).
func runsCheckFair(t *testing.T, urls []string, alice, bob string) {
	const perUser, n = runner.DefaultRunsPerUser, 12
	const longMs = 3000 // longer than bob's bound: with one shared queue he would wait for one of these
	last := urls[len(urls)-1]
	long := runsWorkflow(t, urls[0], alice, "long", idflow.Step{ID: "long", Type: idflow.StepWait, Ms: longMs})
	short := runsWorkflow(t, last, bob, "short", idflow.Step{ID: "who", Type: idflow.StepTool, Tool: "whoami"})
	var runs []idflow.Run
	for i := range n {
		runs = append(runs, runsStart(t, urls[i%len(urls)], alice, long.ID, 0, nil))
	}
	get := func(run idflow.Run) idflow.Run {
		return runsJSON[idflow.Run](t, urls[0], "GET", "/api/v1/runs/"+run.ID, alice, nil, http.StatusOK)
	}

	b := runsStart(t, last, bob, short.ID, 0, nil)
	end := runsWaitEnd(t, last, bob, b.ID, 30*time.Second)
	if end.Status != idflow.RunSucceeded {
		t.Fatalf("bob's run: %s (%s)", end.Status, end.Error)
	}
	took := end.FinishedAt.Sub(end.CreatedAt)
	if took > 2*time.Second {
		t.Fatalf("bob's short run took %s from start to end behind alice's %d runs; want at most 2s", took, n)
	}
	waiting := 0
	for _, run := range runs {
		if r := get(run); r.Status == idflow.RunQueued && r.StartedAt == nil {
			waiting++
		}
	}
	if waiting < n-2*perUser {
		t.Fatalf("%d of alice's runs were waiting when bob's ended; want at least %d", waiting, n-2*perUser)
	}
	t.Logf("bob's run took %s; %d of alice's %d runs were waiting", took.Round(time.Millisecond), waiting, n)

	// As her first runs end, her next ones are admitted, in her order.
	runsPoll(t, 60*time.Second, "alice's runs 3 and 4 start after her first ones end", func() (bool, string) {
		r3, r4 := get(runs[perUser]), get(runs[perUser+1])
		return r3.StartedAt != nil && r4.StartedAt != nil, r3.Status + ", " + r4.Status
	})
	for i, run := range runs[2*perUser:] {
		if r := get(run); r.StartedAt != nil && r.StartedAt.Before(*get(runs[perUser+1]).StartedAt) {
			t.Fatalf("alice's run %d started before her run %d", 2*perUser+i, perUser+1)
		}
	}
	// The rest is cancelled through every replica, newest first: the
	// waiting runs (which frees no slot), then the running ones.
	for i := n - 1; i >= 0; i-- {
		status, body := runsCall(t, urls[i%len(urls)], "POST", "/api/v1/runs/"+runs[i].ID+"/cancel", alice, nil)
		if status != http.StatusOK && status != http.StatusConflict {
			t.Fatalf("cancel %s: %d %s", runs[i].ID, status, body)
		}
	}

	type span struct {
		at    time.Time
		delta int
	}
	var spans []span
	started := 0
	for i, run := range runs {
		r := runsWaitEnd(t, urls[0], alice, run.ID, 30*time.Second)
		evs := runsEvents(t, urls[0], alice, run.ID)
		runsCheckSeq(t, evs)
		for _, e := range evs {
			if e.UserID != "alice" {
				t.Fatalf("event of %q in alice's run:%s", e.UserID, runsDescribe(evs))
			}
		}
		if r.StartedAt == nil {
			// Cancelled while waiting: nothing ran.
			if r.Status != idflow.RunCancelled || len(evs) != 2 || evs[0].Type != idflow.EventRunQueued || evs[1].Type != idflow.EventRunCancelled {
				t.Fatalf("alice's run %d never started and is %s:%s; want cancelled after run.queued", i, r.Status, runsDescribe(evs))
			}
			continue
		}
		started++
		spans = append(spans, span{*r.StartedAt, 1}, span{*r.FinishedAt, -1})
	}
	if started < 2*perUser {
		t.Fatalf("%d of alice's runs started; want at least %d", started, 2*perUser)
	}
	// At no moment were more than perUser of her runs running (an end
	// sorts before a start at the same instant).
	slices.SortFunc(spans, func(a, b span) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.delta - b.delta
	})
	running, most := 0, 0
	for _, s := range spans {
		running += s.delta
		most = max(most, running)
	}
	if most > perUser {
		t.Fatalf("%d of alice's runs were running at once; want at most %d", most, perUser)
	}
}
