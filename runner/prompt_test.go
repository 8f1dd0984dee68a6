package runner

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
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
