package metrics

import (
	"context"
	"encoding/json"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/httpapi"
)

// runStates are the states idflow_runs_transitions_total counts; a status
// outside them is not counted, so a label value never comes from data.
var runStates = []string{idflow.RunQueued, idflow.RunRunning, idflow.RunSucceeded, idflow.RunFailed, idflow.RunCancelled}

func (m *Metrics) runCounters() map[string]prometheus.Counter {
	out := make(map[string]prometheus.Counter, len(runStates))
	for _, st := range runStates {
		out[st] = m.runs.WithLabelValues(st)
	}
	return out
}

// RunStore is what the runner records runs through (runner.RunStore).
type RunStore interface {
	idflow.RunStore
	idflow.WorkflowStore
}

// CountRunStates returns s, counting every state a run is moved to through
// it (running, succeeded, failed, cancelled): give it to the runner's
// executor.
func (m *Metrics) CountRunStates(s RunStore) RunStore {
	return countingRunStore{RunStore: s, states: m.runCounters()}
}

type countingRunStore struct {
	RunStore
	states map[string]prometheus.Counter
}

func (s countingRunStore) UpdateRun(ctx context.Context, p idflow.Principal, id string, u idflow.RunUpdate) (idflow.Run, error) {
	run, err := s.RunStore.UpdateRun(ctx, p, id, u)
	if c := s.states[u.Status]; err == nil && c != nil {
		c.Inc()
	}
	return run, err
}

// CountRunStarts returns r, counting every run it queues.
func (m *Metrics) CountRunStarts(r httpapi.Runs) httpapi.Runs {
	return countingRuns{Runs: r, queued: m.runCounters()[idflow.RunQueued]}
}

type countingRuns struct {
	httpapi.Runs
	queued prometheus.Counter
}

func (r countingRuns) Start(ctx context.Context, p idflow.Principal, workflowID string, input json.RawMessage, version int) (idflow.Run, error) {
	run, err := r.Runs.Start(ctx, p, workflowID, input, version)
	if err == nil {
		r.queued.Inc()
	}
	return run, err
}
