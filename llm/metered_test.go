package llm_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/internal/llmtest"
	"github.com/idflow/idflow/llm"
	"github.com/idflow/idflow/sqlite"
)

func openStore(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "idflow.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

type failing struct{}

func (failing) Chat(context.Context, idflow.Principal, idflow.ChatRequest, func(string) error) (idflow.ChatResponse, error) {
	return idflow.ChatResponse{}, idflow.Errorf(idflow.EUNAVAILABLE, "down")
}

// cancelling answers, but the caller's context has ended by the time it
// returns (a client that went away as the answer came).
type cancelling struct{ cancel context.CancelFunc }

func (c cancelling) Chat(_ context.Context, _ idflow.Principal, _ idflow.ChatRequest, _ func(string) error) (idflow.ChatResponse, error) {
	c.cancel()
	return idflow.ChatResponse{Model: "late", Usage: idflow.Usage{PromptTokens: 4, CompletionTokens: 1}}, nil
}

// TestMeteredRecordsPerUserDayModel drives the OpenAI client (streamed and
// whole answers) and the echo model through Metered into a real store.
func TestMeteredRecordsPerUserDayModel(t *testing.T) {
	db := openStore(t)
	now := time.Date(2026, 4, 1, 23, 59, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	srv := llmtest.New(t,
		llmtest.Reply{Text: "a", Usage: &llmtest.Usage{PromptTokens: 100, CompletionTokens: 10}},
		llmtest.Reply{Text: "b c", Usage: &llmtest.Usage{PromptTokens: 50, CompletionTokens: 5}},
		llmtest.Reply{Text: "d", Usage: &llmtest.Usage{PromptTokens: 7, CompletionTokens: 7}})
	openaiModel := llm.Metered{Model: client(t, srv), Usage: db, Now: clock}
	echo := llm.Metered{Model: llm.Echo{}, Usage: db, Now: clock}
	ctx := t.Context()
	if _, err := openaiModel.Chat(ctx, alice, ask("q"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := openaiModel.Chat(ctx, alice, ask("q"), func(string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := openaiModel.Chat(ctx, bob, ask("q"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := echo.Chat(ctx, alice, ask("one two"), nil); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute) // the next day, UTC
	if _, err := echo.Chat(ctx, alice, ask("three"), nil); err != nil {
		t.Fatal(err)
	}
	// A failed call reports no usage and is not counted.
	if _, err := (llm.Metered{Model: failing{}, Usage: db, Now: clock}).Chat(ctx, alice, ask("q"), nil); idflow.ErrorCode(err) != idflow.EUNAVAILABLE {
		t.Fatalf("a failing model: %v", err)
	}
	got, err := db.ListUsage(ctx, alice, now.AddDate(0, 0, -7), now)
	if err != nil {
		t.Fatal(err)
	}
	want := []idflow.UsageDay{
		{UserID: "alice", Day: "2026-04-01", Model: "gpt-test", PromptTokens: 150, CompletionTokens: 15, Calls: 2},
		{UserID: "alice", Day: "2026-04-01", Model: llm.EchoModelName, PromptTokens: 2, CompletionTokens: 5, Calls: 1},
		{UserID: "alice", Day: "2026-04-02", Model: llm.EchoModelName, PromptTokens: 1, CompletionTokens: 4, Calls: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("alice's usage: %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("row %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	bobs, err := db.ListUsage(ctx, bob, now.AddDate(0, 0, -7), now)
	if err != nil || len(bobs) != 1 || bobs[0].PromptTokens != 7 || bobs[0].Calls != 1 {
		t.Fatalf("bob's usage: %+v, %v", bobs, err)
	}
}

// TestMeteredRecordsAfterTheCallerLeft: the tokens were spent; the
// caller's ended context does not lose them.
func TestMeteredRecordsAfterTheCallerLeft(t *testing.T) {
	db := openStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	at := time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)
	resp, err := llm.Metered{Model: cancelling{cancel}, Usage: db, Now: func() time.Time { return at }}.Chat(ctx, alice, ask("q"), nil)
	if err != nil || resp.Model != "late" || !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatalf("got %+v, %v (ctx %v)", resp, err, ctx.Err())
	}
	got, err := db.ListUsage(t.Context(), alice, at, at)
	if err != nil || len(got) != 1 || got[0].Model != "late" || got[0].PromptTokens != 4 {
		t.Fatalf("usage %+v, %v", got, err)
	}
}
