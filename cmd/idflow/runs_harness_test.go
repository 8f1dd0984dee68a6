package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

// This file is the harness of runs_test.go and ws_test.go: idflow in
// production mode (an authtest issuer, no dev issuer) with tokens for alice
// and bob (tenant t-one) and carol (tenant t-two), plain HTTP helpers for
// the run routes, and a way to run the server as a separate process that can
// be killed with SIGKILL (see main_test.go).

// runsWorld is one production-mode idflow and the issuer it trusts.
type runsWorld struct {
	iss               *authtest.Issuer
	srv               *runningServer
	URL               string
	alice, bob, carol string // bearer tokens (one hour)
}

// runsUsers are the test users: login → tenant.
var runsUsers = map[string]string{"alice": "t-one", "bob": "t-one", "carol": "t-two"}

// runsToken signs a user token for login, valid for lifetime.
func runsToken(iss *authtest.Issuer, login string, lifetime time.Duration) string {
	now := time.Now()
	return iss.Token(iss.OIDC(login).
		With("tid", runsUsers[login]).
		With("name", login).
		With("email", login+"@example.test").
		With("iat", now.Unix()).
		With("exp", now.Add(lifetime).Unix()))
}

// runsEnv is the environment of a production-mode idflow trusting iss,
// with extra on top.
func runsEnv(iss *authtest.Issuer, extra map[string]string) map[string]string {
	env := map[string]string{
		"IDFLOW_OIDC_ISSUER":   iss.Issuer(),
		"IDFLOW_OIDC_AUDIENCE": iss.Audience(),
		"IDFLOW_LOG_LEVEL":     "warn",
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// startRunsWorld starts idflow in-process in production mode with extra
// settings.
func startRunsWorld(t *testing.T, extra map[string]string) *runsWorld {
	t.Helper()
	iss := authtest.NewIssuer(t)
	srv := startIdflow(t, runsEnv(iss, extra))
	w := &runsWorld{iss: iss, srv: srv, URL: srv.URL,
		alice: runsToken(iss, "alice", time.Hour), bob: runsToken(iss, "bob", time.Hour), carol: runsToken(iss, "carol", time.Hour)}
	if m := srv.me(t, w.alice); m.UserID != "alice" || m.Kind != "user" {
		t.Fatalf("alice's token: %+v; want user alice", m)
	}
	return w
}

// runsCall sends method path with a JSON body (nil: none) and a bearer
// token (empty: none), and returns the status and body.
func runsCall(t testing.TB, base, method, path, token string, body any) (int, []byte) {
	t.Helper()
	status, b, err := runsCallErr(base, method, path, token, body)
	if err != nil {
		t.Fatal(err)
	}
	return status, b
}

// runsCallErr is runsCall for goroutines other than the test's own.
func runsCallErr(base, method, path, token string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := runsHTTP.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return resp.StatusCode, b, nil
}

// runsStartErr starts a run from any goroutine.
func runsStartErr(base, token, wfID string, input any) (idflow.Run, error) {
	status, b, err := runsCallErr(base, "POST", "/api/v1/workflows/"+wfID+"/runs", token, map[string]any{"input": input})
	if err != nil {
		return idflow.Run{}, err
	}
	if status != http.StatusAccepted {
		return idflow.Run{}, fmt.Errorf("start run: status %d, body %s", status, b)
	}
	var run idflow.Run
	if err := json.Unmarshal(b, &run); err != nil {
		return idflow.Run{}, err
	}
	return run, nil
}

var runsHTTP = &http.Client{Timeout: 30 * time.Second}

// runsJSON calls method path, requires status want, and decodes the answer.
func runsJSON[T any](t testing.TB, base, method, path, token string, body any, want int) T {
	t.Helper()
	status, b := runsCall(t, base, method, path, token, body)
	if status != want {
		t.Fatalf("%s %s: status %d, body %s; want %d", method, path, status, b, want)
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s %s: %v: %s", method, path, err, b)
	}
	return out
}

// runsWorkflow creates a workflow draft of steps as token's user.
func runsWorkflow(t testing.TB, base, token, name string, steps ...idflow.Step) idflow.Workflow {
	t.Helper()
	return runsJSON[idflow.Workflow](t, base, "POST", "/api/v1/workflows", token,
		map[string]any{"name": name, "definition": idflow.Definition{Steps: steps}}, http.StatusCreated)
}

// runsStart starts a run of workflow wfID (version 0: the draft).
func runsStart(t testing.TB, base, token, wfID string, version int, input any) idflow.Run {
	t.Helper()
	body := map[string]any{"input": input}
	if version != 0 {
		body["version"] = version
	}
	run := runsJSON[idflow.Run](t, base, "POST", "/api/v1/workflows/"+wfID+"/runs", token, body, http.StatusAccepted)
	if run.ID == "" || run.Status != idflow.RunQueued {
		t.Fatalf("start run: %+v; want a queued run with an id", run)
	}
	return run
}

// runsEvents is a run's whole stored history.
func runsEvents(t testing.TB, base, token, runID string) []idflow.Event {
	t.Helper()
	return runsJSON[struct {
		Items []idflow.Event `json:"items"`
	}](t, base, "GET", "/api/v1/runs/"+runID+"/events", token, nil, http.StatusOK).Items
}

// runsPoll calls check every few milliseconds until it reports done, or
// fails the test at the deadline with what check last said.
func runsPoll(t testing.TB, within time.Duration, what string, check func() (done bool, state string)) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		done, state := check()
		if done {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("%s: not within %s; last state: %s", what, within, state)
		case <-tick.C:
		}
	}
}

// runsWaitEnd polls a run until it has ended — its status is final and
// its terminal event is stored — and returns it. The runner records the
// end in two writes, the status first (it decides a race between a cancel
// and the worker's own end), then the event, so for a moment the status
// can be final before the event exists; the runner test
// TestEndedRunGetsItsTerminalEvent covers a crash between the two.
func runsWaitEnd(t testing.TB, base, token, runID string, within time.Duration) idflow.Run {
	t.Helper()
	var run idflow.Run
	runsPoll(t, within, "run "+runID+" ends", func() (bool, string) {
		run = runsJSON[idflow.Run](t, base, "GET", "/api/v1/runs/"+runID, token, nil, http.StatusOK)
		if !run.Terminal() {
			return false, run.Status
		}
		for _, e := range runsEvents(t, base, token, runID) {
			if e.Terminal() {
				return true, ""
			}
		}
		return false, run.Status + " without its terminal event yet"
	})
	return run
}

// runsWaitEvent polls a run's history until it holds an event matching
// match, and returns the history.
func runsWaitEvent(t testing.TB, base, token, runID string, within time.Duration, what string, match func(idflow.Event) bool) []idflow.Event {
	t.Helper()
	var evs []idflow.Event
	runsPoll(t, within, "run "+runID+": "+what, func() (bool, string) {
		evs = runsEvents(t, base, token, runID)
		for _, e := range evs {
			if match(e) {
				return true, ""
			}
		}
		return false, runsDescribe(evs)
	})
	return evs
}

// runsDescribe lists events compactly for failure messages.
func runsDescribe(evs []idflow.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "\n  %d %s %s user=%s %s", e.Seq, e.Type, e.StepID, e.UserID, e.Data)
	}
	return b.String()
}

// runsCount counts events of type typ (and step stepID when not empty).
func runsCount(evs []idflow.Event, typ, stepID string) int {
	n := 0
	for _, e := range evs {
		if e.Type == typ && (stepID == "" || e.StepID == stepID) {
			n++
		}
	}
	return n
}

// runsCheckSeq fails unless evs are seq 1..n exactly once each, in order.
func runsCheckSeq(t testing.TB, evs []idflow.Event) {
	t.Helper()
	for i, e := range evs {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d; want %d (gap, duplicate or disorder):%s", i, e.Seq, i+1, runsDescribe(evs))
		}
	}
}

// runsChild is `idflow serve` in a separate process: the test binary
// re-executed with IDFLOW_TEST_CHILD=serve (main_test.go), so that it can be
// killed with SIGKILL mid-run.
type runsChild struct {
	URL    string
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{}
	err    error // set when exited is closed
}

// startRunsChild starts the child with env (IDFLOW_LISTEN and
// IDFLOW_DATA_DIR must be set) and waits until /healthz answers 200.
func startRunsChild(t *testing.T, env map[string]string, args ...string) *runsChild {
	t.Helper()
	argsJSON, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// Only what the child needs: no IDFLOW_* from the test's environment.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir(),
		"IDFLOW_TEST_CHILD=serve", "IDFLOW_TEST_CHILD_ARGS=" + string(argsJSON)}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	c := &runsChild{URL: "http://" + env["IDFLOW_LISTEN"], cmd: cmd, stderr: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = io.Discard, c.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	go func() { c.err = cmd.Wait(); close(c.exited) }()
	t.Cleanup(func() {
		c.kill(t)
		if t.Failed() {
			t.Logf("child %d stderr:\n%s", cmd.Process.Pid, c.stderr.String())
		}
	})
	runsPoll(t, 60*time.Second, "child idflow healthy", func() (bool, string) {
		select {
		case <-c.exited:
			t.Fatalf("child exited before it was healthy: %v\n%s", c.err, c.stderr.String())
		default:
		}
		resp, err := runsHTTP.Get(c.URL + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return c
}

// kill sends SIGKILL and waits until the process is gone.
func (c *runsChild) kill(t testing.TB) {
	t.Helper()
	select {
	case <-c.exited:
		return
	default:
	}
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("SIGKILL child: %v", err)
	}
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		t.Errorf("child %d did not die within 30s of SIGKILL", c.cmd.Process.Pid)
	}
}

// runsCollector gathers what goroutines report, for assertions afterwards.
type runsCollector[T any] struct {
	mu    sync.Mutex
	items []T
}

func (c *runsCollector[T]) add(v T) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.items = append(c.items, v)
}

func (c *runsCollector[T]) all() []T {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]T(nil), c.items...)
}

// runsCtx is a context that ends with the test (or after d).
func runsCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// runsJobs opens the River job table of an idflow data dir read-only: the
// state of a run's job is how a test learns that its worker has returned.
type runsJobs struct{ db *sql.DB }

func openRunsJobs(t testing.TB, dataDir string) *runsJobs {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir, "idflow.db")+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &runsJobs{db: db}
}

// job answers the state and attempt of runID's job.
func (j *runsJobs) job(t testing.TB, runID string) (state string, attempt int) {
	t.Helper()
	err := j.db.QueryRow(`SELECT state, attempt FROM river_job WHERE json_extract(args, '$.run_id') = ?`, runID).Scan(&state, &attempt)
	if err != nil {
		t.Fatalf("job of run %s: %v", runID, err)
	}
	return state, attempt
}

// waitFinalized polls until runID's job is no longer available, running or
// retryable — its worker has returned for good — and answers the state.
func (j *runsJobs) waitFinalized(t testing.TB, runID string, within time.Duration) (state string, attempt int) {
	t.Helper()
	runsPoll(t, within, "job of run "+runID+" finalized", func() (bool, string) {
		state, attempt = j.job(t, runID)
		switch state {
		case "completed", "cancelled", "discarded":
			return true, state
		}
		return false, state
	})
	return state, attempt
}
