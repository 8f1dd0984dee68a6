package budget

import (
	"context"
	"encoding/json"

	"github.com/idflow/idflow"
)

// Model is a ChatModel whose every call is held to p's budgets: reserved
// before the call from its estimate, refused (ERATELIMIT) without calling
// the model when that would pass a budget, and settled to the reported
// usage after it. Chat turns, workflow prompts and agent steps all call
// the model through it.
type Model struct {
	Model   idflow.ChatModel
	Budgets *Budgets
}

func (m Model) Chat(ctx context.Context, p idflow.Principal, req idflow.ChatRequest, onDelta func(string) error) (idflow.ChatResponse, error) {
	res, err := m.Budgets.Reserve(ctx, p, Estimate(req))
	if err != nil {
		return idflow.ChatResponse{}, err
	}
	resp, err := m.Model.Chat(ctx, p, req, onDelta)
	used := int64(0)
	if err == nil {
		used = resp.Usage.PromptTokens + resp.Usage.CompletionTokens
	}
	// Settled even when the caller has gone: the tokens were spent. When
	// settling fails the reservation stays counted, which errs on the side
	// of the budget; the answer stands.
	_ = m.Budgets.Settle(context.WithoutCancel(ctx), res, used)
	return resp, err
}

// Estimate is the prompt tokens of req, estimated as every model
// tokenizer roughly counts English: a token per 4 bytes of the messages
// and tool schemas.
func Estimate(req idflow.ChatRequest) int64 {
	n := 0
	for _, msg := range req.Messages {
		n += len(msg.Content) + len(msg.Role) + 4
		for _, c := range msg.ToolCalls {
			n += len(c.Name) + len(c.Arguments)
		}
	}
	for _, t := range req.Tools {
		b, _ := json.Marshal(t) // a ToolSpec always encodes
		n += len(b)
	}
	return int64((n + 3) / 4)
}

// EstimateText is the tokens of s, as Estimate counts them.
func EstimateText(s string) int64 { return int64((len(s) + 3) / 4) }
