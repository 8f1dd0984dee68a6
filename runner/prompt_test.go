package runner

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/events"
	"github.com/idflow/idflow/service"
	"github.com/idflow/idflow/sqlite"
)

func TestPromptExpansionIsBounded(t *testing.T) {
	e := &Executor{}
	big := json.RawMessage(`"` + strings.Repeat("x", 64<<10) + `"`)
	run := idflow.Run{Input: big}
	st := idflow.Step{ID: "p", Type: idflow.StepPrompt, Prompt: strings.Repeat("{{input}}", 10)}
	_, err := e.step(t.Context(), authtest.User("alice", "t-one"), run, st, json.RawMessage("null"))
	if idflow.ErrorCode(err) != idflow.EINVALID {
		t.Fatalf("a prompt of 10 × 64 KiB was not refused: %v", err)
	}
}

// streamModel sends its pieces as deltas. After the first it waits until
// the test has seen that delta on the run's event bus.
type streamModel struct {
	pieces []string
	seen   chan struct{}
}

func (m streamModel) Chat(ctx context.Context, _ idflow.Principal, _ idflow.ChatRequest, onDelta func(string) error) (idflow.ChatResponse, error) {
	for i, p := range m.pieces {
		if err := onDelta(p); err != nil {
			return idflow.ChatResponse{}, err
		}
		if i == 0 {
			select {
			case <-m.seen:
			case <-ctx.Done():
				return idflow.ChatResponse{}, ctx.Err()
			}
		}
	}
	return idflow.ChatResponse{Content: strings.Join(m.pieces, "")}, nil
}

// TestPromptStepStreamsDeltas: a prompt step's text goes out on the run's
// bus (what the run WebSocket relays) as step.output {"delta"} events while
// the model streams — the first as soon as the first token arrives — and
// the step's output is still its {"reply"}, which alone a resumed run takes
// as the step's output.
func TestPromptStepStreamsDeltas(t *testing.T) {
	ctx := t.Context()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "idflow.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	alice := authtest.User("alice", "t-one")
	big := strings.Repeat("x", deltaBytes)
	m := streamModel{pieces: []string{"Hel", "lo", " ", big, "!"}, seen: make(chan struct{})}
	svc := service.New(service.Config{}, service.Deps{Store: db, Model: m})
	bus := events.NewMemory(0)
	e := NewExecutor(svc, db, bus, nil, nil)
	st := idflow.Step{ID: "say", Type: idflow.StepPrompt, Prompt: "greet {{input}}"}
	wf, err := svc.CreateWorkflow(ctx, alice, "wf", idflow.Definition{Steps: []idflow.Step{st}})
	if err != nil {
		t.Fatal(err)
	}
	run, err := db.CreateRun(ctx, alice, idflow.Run{TenantID: "t-one", WorkflowID: wf.ID, Definition: wf.Definition, Input: json.RawMessage(`"bob"`)})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := bus.Subscribe(ctx, alice, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	go func() {
		for ev := range sub.Events() {
			if ev.Type == idflow.EventStepOutput && string(ev.Data) == `{"delta":"Hel"}` {
				close(m.seen)
				return
			}
		}
	}()
	out, err := e.step(ctx, alice, run, st, json.RawMessage("null"))
	if err != nil {
		t.Fatal(err)
	}
	if reply := out.(map[string]string)["reply"]; reply != "Hello "+big+"!" {
		t.Fatalf("reply %.20q…", reply)
	}
	evs, err := db.ListEvents(ctx, alice, run.ID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var deltas []string
	for _, ev := range evs {
		if ev.Type != idflow.EventStepOutput {
			continue
		}
		var d struct{ Delta string }
		if err := json.Unmarshal(ev.Data, &d); err != nil || ev.StepID != "say" || ev.UserID != "alice" {
			t.Fatalf("event %+v", ev)
		}
		deltas = append(deltas, d.Delta)
	}
	// "Hel" alone, then the rest, gathered (how much depends on timing).
	if len(deltas) < 2 || len(deltas) > len(m.pieces) || deltas[0] != "Hel" || strings.Join(deltas, "") != "Hello "+big+"!" {
		t.Fatalf("%d delta events spelling %.20q…", len(deltas), strings.Join(deltas, ""))
	}
	// The step's output, once emitted after the deltas, is what counts.
	b, _ := json.Marshal(out)
	if _, err := db.AppendEvent(ctx, alice, idflow.Event{RunID: run.ID, Type: idflow.EventStepOutput, StepID: "say", Data: b}); err != nil {
		t.Fatal(err)
	}
	if evs, err = db.ListEvents(ctx, alice, run.ID, 0, 100); err != nil {
		t.Fatal(err)
	}
	if got, _ := completedOutput(append(evs, idflow.Event{Type: idflow.EventStepCompleted, StepID: "say"}), "say"); string(got) != string(b) {
		t.Fatalf("a resumed run would take %.40s… as the step's output", got)
	}
}

// TestPromptStepDeltasAreBounded: a step sends at most maxDeltaEvents
// delta events, however long the model streams.
func TestPromptStepDeltasAreBounded(t *testing.T) {
	ctx := t.Context()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "idflow.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	alice := authtest.User("alice", "t-one")
	svc := service.New(service.Config{}, service.Deps{Store: db})
	e := NewExecutor(svc, db, events.NewMemory(0), nil, nil)
	wf, err := svc.CreateWorkflow(ctx, alice, "wf", idflow.Definition{Steps: []idflow.Step{{ID: "s", Type: idflow.StepPrompt, Prompt: "p"}}})
	if err != nil {
		t.Fatal(err)
	}
	run, err := db.CreateRun(ctx, alice, idflow.Run{TenantID: "t-one", WorkflowID: wf.ID, Definition: wf.Definition})
	if err != nil {
		t.Fatal(err)
	}
	d := &deltas{e: e, p: alice, runID: run.ID, stepID: "s"}
	piece := strings.Repeat("y", deltaBytes) // each piece fills a delta on its own
	for range maxDeltaEvents + 50 {
		if err := d.add(ctx, piece); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.flush(ctx); err != nil {
		t.Fatal(err)
	}
	evs, err := db.ListEvents(ctx, alice, run.ID, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range evs {
		if ev.Type == idflow.EventStepOutput {
			n++
		}
	}
	if n != maxDeltaEvents {
		t.Fatalf("%d delta events; want %d", n, maxDeltaEvents)
	}
}
