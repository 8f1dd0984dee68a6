package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/tools"
)

// execute runs (or resumes) runID as p. Steps already completed by an
// earlier attempt — before a crash, a restart or a retry — are skipped, so a
// run resumes where it stopped. final marks River's last attempt: a failure
// then ends the run instead of retrying.
func (e *Executor) execute(ctx context.Context, p idflow.Principal, runID string, attempt int, final bool) error {
	run, err := e.runs.GetRun(ctx, p, runID)
	if err != nil {
		return river.JobCancel(fmt.Errorf("load run: %w", err))
	}
	if run.Terminal() {
		// Cancelled while queued, or finished by an earlier attempt.
		return e.ensureEndEvent(ctx, p, run, final)
	}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	e.mu.Lock()
	e.running[runID] = stop
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.running, runID)
		e.mu.Unlock()
	}()
	// A cancel handled by another replica arrives as an event on the bus.
	if sub, err := e.bus.Subscribe(ctx, p, runID); err == nil {
		defer sub.Close()
		go func() {
			for ev := range sub.Events() {
				if ev.Type == idflow.EventRunCancelled {
					stop(errCancelled)
					return
				}
			}
		}()
	}

	history, err := e.runs.ListEvents(ctx, p, runID, 0, 10000)
	if err != nil {
		return fmt.Errorf("load events: %w", err)
	}
	if _, err := e.runs.UpdateRun(ctx, p, runID, idflow.RunUpdate{Status: idflow.RunRunning, Attempt: attempt}); err != nil {
		if idflow.ErrorCode(err) == idflow.ECONFLICT {
			return nil // ended meanwhile
		}
		return err
	}
	if err := e.emit(ctx, p, runID, idflow.EventRunStarted, "", map[string]any{"attempt": attempt, "resumed_steps": len(completedSteps(history))}); err != nil {
		return err
	}

	var last json.RawMessage = json.RawMessage("null")
	for _, st := range run.Definition.Steps {
		if out, ok := completedOutput(history, st.ID); ok {
			last = out
			continue
		}
		if err := context.Cause(ctx); err != nil {
			return e.stopped(ctx, p, runID, err, final)
		}
		if err := e.emit(ctx, p, runID, idflow.EventStepStarted, st.ID, map[string]string{"type": st.Type}); err != nil {
			return err
		}
		out, err := e.step(ctx, p, run, st, last)
		if err != nil {
			if cause := context.Cause(ctx); cause != nil {
				return e.stopped(ctx, p, runID, cause, final)
			}
			return e.failed(ctx, p, runID, st.ID, err, final)
		}
		b, err := json.Marshal(out)
		if err != nil {
			return e.failed(ctx, p, runID, st.ID, err, true)
		}
		last = b
		if err := e.emit(ctx, p, runID, idflow.EventStepOutput, st.ID, out); err != nil {
			return err
		}
		if err := e.emit(ctx, p, runID, idflow.EventStepCompleted, st.ID, nil); err != nil {
			return err
		}
	}
	if _, err := e.runs.UpdateRun(context.WithoutCancel(ctx), p, runID, idflow.RunUpdate{Status: idflow.RunSucceeded, Output: last}); err != nil {
		if idflow.ErrorCode(err) == idflow.ECONFLICT {
			return nil // cancelled at the last moment
		}
		return err
	}
	return e.emit(context.WithoutCancel(ctx), p, runID, idflow.EventRunCompleted, "", map[string]json.RawMessage{"output": last})
}

// endEventGrace is how long after a run's end its terminal event may still
// be on its way from the writer of the end (a cancel request, on this or
// another replica). It is written milliseconds after the status.
const endEventGrace = 10 * time.Second

// ensureEndEvent makes sure a run that has ended has its terminal event.
// The end is recorded in two writes — the status (which decides between a
// cancel and the worker's own end), then the event — so a process killed
// between the two leaves a run that has ended without the event its
// subscribers wait for. The job of such a run is rescued and comes back
// here, and the missing event is written. While the end is recent, its
// writer may still be about to write the event itself, so the job is
// retried later instead (River's backoff outlasts the grace); the last
// attempt writes it regardless.
func (e *Executor) ensureEndEvent(ctx context.Context, p idflow.Principal, run idflow.Run, final bool) error {
	history, err := e.runs.ListEvents(ctx, p, run.ID, 0, 10000)
	if err != nil {
		return fmt.Errorf("load events: %w", err)
	}
	for _, ev := range history {
		if ev.Terminal() {
			return nil
		}
	}
	if !final && (run.FinishedAt == nil || time.Since(*run.FinishedAt) < endEventGrace) {
		return fmt.Errorf("run %s has ended without its terminal event yet", run.ID)
	}
	e.log.WarnContext(ctx, "writing the terminal event of a run interrupted after it ended", "run_id", run.ID, "status", run.Status)
	switch run.Status {
	case idflow.RunSucceeded:
		return e.emit(ctx, p, run.ID, idflow.EventRunCompleted, "", map[string]json.RawMessage{"output": run.Output})
	case idflow.RunFailed:
		return e.emit(ctx, p, run.ID, idflow.EventRunFailed, "", map[string]string{"error": run.Error})
	default:
		return e.emit(ctx, p, run.ID, idflow.EventRunCancelled, "", map[string]string{"by": p.UserID})
	}
}

func completedSteps(history []idflow.Event) []string {
	var ids []string
	for _, ev := range history {
		if ev.Type == idflow.EventStepCompleted {
			ids = append(ids, ev.StepID)
		}
	}
	return ids
}

// completedOutput returns the output of a step an earlier attempt completed.
func completedOutput(history []idflow.Event, stepID string) (json.RawMessage, bool) {
	var out json.RawMessage = json.RawMessage("null")
	completed := false
	for _, ev := range history {
		if ev.StepID != stepID {
			continue
		}
		switch ev.Type {
		case idflow.EventStepOutput:
			out = ev.Data
		case idflow.EventStepCompleted:
			completed = true
		}
	}
	return out, completed
}

// stopped handles a run whose context ended: a cancel (already recorded by
// cancel), or the run timeout, which fails the run for good.
func (e *Executor) stopped(ctx context.Context, p idflow.Principal, runID string, cause error, final bool) error {
	if errors.Is(cause, errCancelled) {
		return nil
	}
	if errors.Is(cause, context.DeadlineExceeded) {
		return river.JobCancel(e.fail(ctx, p, runID, "", "run timed out"))
	}
	return cause // the process is stopping: River retries the job, and the run resumes
}

// failed records a step failure; the run fails on the final attempt, and is
// retried by River otherwise.
func (e *Executor) failed(ctx context.Context, p idflow.Principal, runID, stepID string, err error, final bool) error {
	msg := idflow.ErrorMessage(err)
	if idflow.ErrorCode(err) == idflow.EINTERNAL {
		msg = "step failed"
	}
	permanent := idflow.ErrorCode(err) != idflow.EUNAVAILABLE && idflow.ErrorCode(err) != idflow.EINTERNAL
	if !final && !permanent {
		_ = e.emit(ctx, p, runID, idflow.EventStepOutput, stepID, map[string]string{"error": msg, "retrying": "true"})
		return fmt.Errorf("step %s: %w", stepID, err)
	}
	return river.JobCancel(e.fail(ctx, p, runID, stepID, msg))
}

func (e *Executor) fail(ctx context.Context, p idflow.Principal, runID, stepID, msg string) error {
	ctx = context.WithoutCancel(ctx)
	if _, err := e.runs.UpdateRun(ctx, p, runID, idflow.RunUpdate{Status: idflow.RunFailed, Error: msg}); err != nil {
		if idflow.ErrorCode(err) == idflow.ECONFLICT {
			return errors.New(msg)
		}
		return err
	}
	if err := e.emit(ctx, p, runID, idflow.EventRunFailed, stepID, map[string]string{"error": msg}); err != nil {
		return err
	}
	return errors.New(msg)
}

// maxPromptBytes bounds a prompt step's text after substitution.
const maxPromptBytes = 256 << 10

// step executes one step as p and returns its output.
func (e *Executor) step(ctx context.Context, p idflow.Principal, run idflow.Run, st idflow.Step, previous json.RawMessage) (any, error) {
	switch st.Type {
	case idflow.StepPrompt:
		// Bound the prompt before building it: a template repeating
		// {{input}} must not multiply a large input into memory.
		size := len(st.Prompt) + strings.Count(st.Prompt, "{{input}}")*len(run.Input) +
			strings.Count(st.Prompt, "{{previous}}")*len(previous)
		if size > maxPromptBytes {
			return nil, idflow.Errorf(idflow.EINVALID, "the prompt would be %d bytes after substitution; the limit is %d", size, maxPromptBytes)
		}
		prompt := strings.NewReplacer("{{input}}", string(run.Input), "{{previous}}", string(previous)).Replace(st.Prompt)
		d := &deltas{e: e, p: p, runID: run.ID, stepID: st.ID}
		reply, err := e.svc.Complete(ctx, p, "", prompt, func(text string) error { return d.add(ctx, text) })
		if err == nil {
			err = d.flush(ctx)
		}
		if err != nil {
			return nil, err
		}
		return map[string]string{"reply": reply}, nil
	case idflow.StepMemorySearch:
		items, err := e.svc.SearchMemory(ctx, p, st.Query, st.Limit)
		if err != nil {
			return nil, err
		}
		return map[string]any{"items": items}, nil
	case idflow.StepTool:
		// Any tool of the catalog the owner may use (offered nil), as the owner.
		res := e.tools.CallTool(tools.WithChannel(ctx, tools.ChannelWorkflow), p,
			idflow.ToolCall{ID: st.ID, Name: st.Tool, Arguments: st.Args}, nil)
		if !res.OK {
			if res.Err == nil {
				return nil, errors.New(res.Content)
			}
			return nil, res.Err
		}
		return json.RawMessage(res.Content), nil
	case idflow.StepWait:
		t := time.NewTimer(time.Duration(st.Ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			return map[string]int{"waited_ms": st.Ms}, nil
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	return nil, idflow.Errorf(idflow.EINVALID, "unknown step type %q", st.Type)
}

// A prompt step streams: while the model answers, the text goes out as
// step.output {"delta": …} events, before the step's own step.output
// {"reply": …}, which alone counts as its output (completedOutput takes the
// last). Each event is stored, so fragments are gathered: the first leaves
// at once, later ones once deltaBytes have gathered or deltaEvery has
// passed, and a step sends at most maxDeltaEvents (the reply has the rest).
const (
	deltaBytes     = 512
	deltaEvery     = 100 * time.Millisecond
	maxDeltaEvents = 200
)

// deltas gathers a prompt step's streamed text into step.output events.
type deltas struct {
	e             *Executor
	p             idflow.Principal
	runID, stepID string
	buf           strings.Builder
	sent          int
	last          time.Time
}

func (d *deltas) add(ctx context.Context, text string) error {
	if d.sent >= maxDeltaEvents {
		return nil
	}
	d.buf.WriteString(text)
	if d.sent > 0 && d.buf.Len() < deltaBytes && time.Since(d.last) < deltaEvery {
		return nil
	}
	return d.flush(ctx)
}

// flush sends what has gathered.
func (d *deltas) flush(ctx context.Context) error {
	if d.buf.Len() == 0 || d.sent >= maxDeltaEvents {
		return nil
	}
	if err := d.e.emit(ctx, d.p, d.runID, idflow.EventStepOutput, d.stepID, map[string]string{"delta": d.buf.String()}); err != nil {
		return err
	}
	d.sent, d.last = d.sent+1, time.Now()
	d.buf.Reset()
	return nil
}
