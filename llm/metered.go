package llm

import (
	"context"
	"log/slog"
	"time"

	"github.com/idflow/idflow"
)

// recordTimeout bounds the recording of one call's usage.
const recordTimeout = 5 * time.Second

// UsageRecorder is where Metered records usage (idflow.UsageStore has it).
type UsageRecorder interface {
	RecordUsage(ctx context.Context, p idflow.Principal, model string, u idflow.Usage, at time.Time) error
}

// Metered is Model with the usage of every answered call recorded for the
// user it was made for, their day (UTC) and the model: chat turns,
// workflow prompts and agent steps alike, since they all call the model
// through it. A call that fails reports no usage and is not counted.
type Metered struct {
	Model idflow.ChatModel
	Usage UsageRecorder
	Now   func() time.Time // the clock; nil is time.Now
	Log   *slog.Logger     // nil discards
}

func (m Metered) Chat(ctx context.Context, p idflow.Principal, req idflow.ChatRequest, onDelta func(string) error) (idflow.ChatResponse, error) {
	resp, err := m.Model.Chat(ctx, p, req, onDelta)
	if err != nil {
		return resp, err
	}
	model := resp.Model
	if model == "" {
		model = req.Model
	}
	now := time.Now
	if m.Now != nil {
		now = m.Now
	}
	// The tokens are spent once the model answered, even if the caller has
	// gone away since: record them anyway, within a bound of its own.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if rerr := m.Usage.RecordUsage(rctx, p, model, resp.Usage, now()); rerr != nil && m.Log != nil {
		m.Log.WarnContext(ctx, "recording model usage failed", "model", model, "err", rerr)
	}
	return resp, nil
}
