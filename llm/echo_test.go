package llm_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/llm"
)

var (
	alice = authtest.User("alice", "t-one")
	bob   = authtest.User("bob", "t-one")
)

func user(content string) idflow.ChatMessage {
	return idflow.ChatMessage{Role: "user", Content: content}
}

func TestEchoEchoes(t *testing.T) {
	resp, err := llm.Echo{}.Chat(t.Context(), alice, idflow.ChatRequest{Messages: []idflow.ChatMessage{
		{Role: "system", Content: "be brief"}, user("first"), {Role: "assistant", Content: "ok"}, user("hello there")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Content != "echo to alice: hello there" || resp.Model != llm.EchoModelName || len(resp.ToolCalls) != 0 {
		t.Fatalf("got %+v", resp)
	}
	// Words count as tokens: 2 + 1 + 1 + 2 in, 5 out.
	if resp.Usage != (idflow.Usage{PromptTokens: 6, CompletionTokens: 5}) {
		t.Fatalf("usage %+v", resp.Usage)
	}
}

func TestEchoStreamsInDeltas(t *testing.T) {
	var deltas []string
	resp, err := llm.Echo{}.Chat(t.Context(), bob, idflow.ChatRequest{Messages: []idflow.ChatMessage{user("one two three four five")}},
		func(d string) error { deltas = append(deltas, d); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(deltas) < 2 || strings.Join(deltas, "") != resp.Content || resp.Content != "echo to bob: one two three four five" {
		t.Fatalf("deltas %q, content %q", deltas, resp.Content)
	}
	stop := errors.New("client gone")
	if _, err := (llm.Echo{}).Chat(t.Context(), bob, idflow.ChatRequest{Messages: []idflow.ChatMessage{user("x y z")}},
		func(string) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("an onDelta error ends the call: got %v", err)
	}
}

func TestEchoToolCommand(t *testing.T) {
	ask := func(msgs ...idflow.ChatMessage) idflow.ChatResponse {
		t.Helper()
		resp, err := llm.Echo{}.Chat(t.Context(), alice, idflow.ChatRequest{Messages: msgs,
			Tools: []idflow.ToolSpec{{Name: "search_memory"}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := ask(user("hi"), idflow.ChatMessage{Role: "assistant", Content: "echo"}, user(`/tool search_memory {"query": "budget"}`))
	if len(resp.ToolCalls) != 1 || resp.Content != "" {
		t.Fatalf("got %+v", resp)
	}
	call := resp.ToolCalls[0]
	if call.Name != "search_memory" || string(call.Arguments) != `{"query": "budget"}` || call.ID == "" {
		t.Fatalf("call %+v", call)
	}
	// Without arguments: {}. A tool that was not offered is still called
	// (the catalog refuses it, which is what the demo shows).
	if got := ask(user("/tool whoami")).ToolCalls; len(got) != 1 || got[0].Name != "whoami" || string(got[0].Arguments) != "{}" {
		t.Fatalf("no arguments: %+v", got)
	}
	// Calls of different turns get different ids.
	if again := ask(user("a"), user(`/tool search_memory {"query": "budget"}`)).ToolCalls[0]; again.ID == call.ID {
		t.Fatalf("two turns, one id %q", call.ID)
	}
	for in, want := range map[string]string{
		"/tool":                      "usage: /tool <name> <json arguments>",
		"/tool add_fact [1,2]":       "cannot call add_fact: the arguments must be a JSON object",
		"/tool add_fact {broken":     "cannot call add_fact: the arguments must be a JSON object",
		"/toolbox please":            "echo to alice: /toolbox please",
		`say /tool whoami {}`:        "echo to alice: say /tool whoami {}",
		`/tool add_fact {"a":1} {}`:  "cannot call add_fact",
		"   /tool   whoami   ":       "",
		`/tool search_memory "text"`: "cannot call search_memory",
	} {
		resp := ask(user(in))
		if want == "" {
			if len(resp.ToolCalls) != 1 || resp.ToolCalls[0].Name != "whoami" {
				t.Errorf("%q: %+v", in, resp)
			}
			continue
		}
		if !strings.HasPrefix(resp.Content, want) || len(resp.ToolCalls) != 0 {
			t.Errorf("%q: got %+v, want text starting %q", in, resp, want)
		}
	}
	// The command counts only as the last message: once the tool answered,
	// it is reported, not called again.
	report := ask(user("/tool whoami"),
		idflow.ChatMessage{Role: "assistant", ToolCalls: []idflow.ToolCall{{ID: "call_1", Name: "whoami", Arguments: []byte("{}")}}},
		idflow.ChatMessage{Role: "tool", ToolCallID: "call_1", Content: `{"user_id":"alice"}`})
	if report.Content != `tool whoami answered: {"user_id":"alice"}` || len(report.ToolCalls) != 0 {
		t.Fatalf("report %+v", report)
	}
}

func TestEchoReportIsBounded(t *testing.T) {
	long := strings.Repeat("é", 5000)
	resp, err := llm.Echo{}.Chat(t.Context(), alice, idflow.ChatRequest{Messages: []idflow.ChatMessage{
		user("/tool get_run"),
		{Role: "assistant", ToolCalls: []idflow.ToolCall{{ID: "c1", Name: "get_run", Arguments: []byte("{}")}}},
		{Role: "tool", ToolCallID: "c1", Content: long},
		{Role: "tool", ToolCallID: "nobody-called-this", Content: "x"},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(resp.Content, "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "tool get_run answered: ééé") || !strings.HasSuffix(lines[0], "…") ||
		len([]rune(lines[0])) > 600 || lines[1] != "tool (unknown) answered: x" {
		t.Fatalf("report: %q", resp.Content)
	}
}
