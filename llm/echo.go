package llm

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/idflow/idflow"
)

// ToolCommand starts a user message that makes the echo model call a tool:
// "/tool <name> <json arguments>".
const ToolCommand = "/tool"

// maxEchoReport bounds how much of a tool's result the echo model repeats.
const maxEchoReport = 500

// Echo answers deterministically from the conversation, so tests and the
// dev mode need no model server:
//
//   - last message from the user "/tool <name> <json arguments>": a call of
//     that tool (whether or not it was offered: the catalog refuses a tool
//     that was not, which shows the refusal);
//   - last messages tool results: "tool <name> answered: <content>";
//   - anything else: "echo to <name>: <the last user message>".
//
// A streamed answer comes in a few deltas. Its usage counts words as
// tokens.
type Echo struct{}

func (Echo) Chat(_ context.Context, p idflow.Principal, req idflow.ChatRequest, onDelta func(string) error) (idflow.ChatResponse, error) {
	resp := idflow.ChatResponse{Model: EchoModelName}
	if n := len(req.Messages); n > 0 && req.Messages[n-1].Role == "user" && isToolCommand(req.Messages[n-1].Content) {
		call, text := toolCommand(req.Messages[n-1].Content, n)
		if call != nil {
			resp.ToolCalls = []idflow.ToolCall{*call}
		}
		resp.Content = text
	} else if report := toolReport(req.Messages); report != "" {
		resp.Content = report
	} else {
		resp.Content = fmt.Sprintf("echo to %s: %s", displayName(p), lastUser(req.Messages))
	}
	if onDelta != nil {
		for _, d := range fragments(resp.Content, 3) {
			if err := onDelta(d); err != nil {
				return idflow.ChatResponse{}, err
			}
		}
	}
	for _, m := range req.Messages {
		resp.Usage.PromptTokens += int64(len(strings.Fields(m.Content)))
	}
	resp.Usage.CompletionTokens = int64(len(strings.Fields(resp.Content)))
	for _, c := range resp.ToolCalls {
		resp.Usage.CompletionTokens += 1 + int64(len(strings.Fields(string(c.Arguments))))
	}
	return resp, nil
}

func displayName(p idflow.Principal) string {
	if p.Name != "" {
		return p.Name
	}
	return p.UserID
}

func lastUser(msgs []idflow.ChatMessage) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == "user" {
			return msgs[i].Content
		}
	}
	return ""
}

func isToolCommand(s string) bool {
	s = strings.TrimSpace(s)
	return s == ToolCommand || strings.HasPrefix(s, ToolCommand+" ")
}

// toolCommand parses "/tool <name> <json arguments>" (arguments default to
// {}); the call's id is made from the message's place in the conversation,
// so it differs from turn to turn. A command it cannot parse is answered
// with a text that says how to write one.
func toolCommand(s string, n int) (*idflow.ToolCall, string) {
	rest := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), ToolCommand))
	name, args, _ := strings.Cut(rest, " ")
	if name == "" {
		return nil, "usage: /tool <name> <json arguments>, e.g. /tool whoami {}"
	}
	args = strings.TrimSpace(args)
	if args == "" {
		args = "{}"
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(args), &obj); err != nil || obj == nil {
		return nil, fmt.Sprintf("cannot call %s: the arguments must be a JSON object, e.g. /tool %s {}", name, name)
	}
	return &idflow.ToolCall{ID: fmt.Sprintf("call_echo_%d", n), Name: name, Arguments: json.RawMessage(args)}, ""
}

// toolReport reports the tool results that end the conversation, naming
// each tool from the assistant message that called it.
func toolReport(msgs []idflow.ChatMessage) string {
	start := len(msgs)
	for start > 0 && msgs[start-1].Role == "tool" {
		start--
	}
	if start == len(msgs) {
		return ""
	}
	names := map[string]string{}
	for _, m := range msgs[:start] {
		for _, c := range m.ToolCalls {
			names[c.ID] = c.Name
		}
	}
	var out []string
	for _, m := range msgs[start:] {
		name := names[m.ToolCallID]
		if name == "" {
			name = "(unknown)"
		}
		out = append(out, fmt.Sprintf("tool %s answered: %s", name, truncate(m.Content, maxEchoReport)))
	}
	return strings.Join(out, "\n")
}

// truncate cuts s to at most max runes, marking the cut.
func truncate(s string, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	return string([]rune(s)[:max]) + "…"
}

// fragments splits s at spaces into at most n pieces that add up to s.
func fragments(s string, n int) []string {
	if s == "" {
		return nil
	}
	words := strings.SplitAfter(s, " ")
	per := (len(words) + n - 1) / n
	var out []string
	for i := 0; i < len(words); i += per {
		out = append(out, strings.Join(words[i:min(i+per, len(words))], ""))
	}
	return out
}
