package idflow

import "context"

// ChatMessage is one message of a conversation sent to a model.
type ChatMessage struct {
	Role       string     `json:"role"` // system, user, assistant, tool
	Content    string     `json:"content"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`   // an assistant message that calls tools
	ToolCallID string     `json:"tool_call_id,omitempty"` // a tool message: the call it answers
}

// ChatRequest is one call to a model.
type ChatRequest struct {
	Model    string
	Messages []ChatMessage
	Tools    []ToolSpec // offered as function tools; empty offers none
}

// ChatResponse is a model's answer: text, tool calls, or both.
type ChatResponse struct {
	Model     string
	Content   string
	ToolCalls []ToolCall
	Usage     Usage
}

// ChatModel answers a conversation on behalf of p. When onDelta is not nil
// the answer is streamed and onDelta receives each fragment of text as it
// arrives; an error from onDelta ends the call. Implementations never send
// p's user id anywhere (the OpenAI client sends a keyed hash of it).
type ChatModel interface {
	Chat(ctx context.Context, p Principal, req ChatRequest, onDelta func(text string) error) (ChatResponse, error)
}
