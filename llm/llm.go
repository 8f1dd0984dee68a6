// Package llm holds the chat models: a deterministic built-in echo model
// (the default) and a client for OpenAI-compatible APIs.
package llm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/idflow/idflow"
)

// EchoModelName is the built-in model's name.
const EchoModelName = "idflow-echo"

// Echo answers deterministically from the last user turn, so tests and the
// dev mode need no model server.
type Echo struct{}

func (Echo) Chat(_ context.Context, p idflow.Principal, req idflow.ChatRequest, onDelta func(string) error) (idflow.ChatResponse, error) {
	last := ""
	for i := len(req.Messages) - 1; i >= 0; i-- {
		if req.Messages[i].Role == "user" {
			last = req.Messages[i].Content
			break
		}
	}
	name := p.Name
	if name == "" {
		name = p.UserID
	}
	text := fmt.Sprintf("echo to %s: %s", name, last)
	if onDelta != nil {
		if err := onDelta(text); err != nil {
			return idflow.ChatResponse{}, err
		}
	}
	return idflow.ChatResponse{Model: EchoModelName, Content: text}, nil
}

// OpenAI calls an OpenAI-compatible /chat/completions endpoint.
type OpenAI struct {
	BaseURL string // e.g. https://api.openai.com/v1
	APIKey  string
	Model   string
	Client  *http.Client
}

// NewOpenAI returns a client for baseURL.
func NewOpenAI(baseURL, apiKey, model string) *OpenAI {
	return &OpenAI{BaseURL: strings.TrimSuffix(baseURL, "/"), APIKey: apiKey, Model: model,
		Client: &http.Client{Timeout: 60 * time.Second}}
}

// HashedUser is what the model provider sees instead of the user id: stable
// per user, useless to anyone else (OpenAI's abuse-monitoring `user` field).
func HashedUser(p idflow.Principal) string {
	sum := sha256.Sum256([]byte("idflow-user:" + p.Issuer + "\x00" + p.UserID))
	return hex.EncodeToString(sum[:16])
}

func (o *OpenAI) Chat(ctx context.Context, p idflow.Principal, creq idflow.ChatRequest, onDelta func(string) error) (idflow.ChatResponse, error) {
	text, err := o.reply(ctx, p, creq.Model, creq.Messages)
	if err != nil {
		return idflow.ChatResponse{}, err
	}
	if onDelta != nil {
		if err := onDelta(text); err != nil {
			return idflow.ChatResponse{}, err
		}
	}
	return idflow.ChatResponse{Model: creq.Model, Content: text}, nil
}

func (o *OpenAI) reply(ctx context.Context, p idflow.Principal, model string, turns []idflow.ChatMessage) (string, error) {
	if model == "" || model == EchoModelName {
		model = o.Model
	}
	body, err := json.Marshal(map[string]any{"model": model, "messages": turns, "user": HashedUser(p)})
	if err != nil {
		return "", fmt.Errorf("llm: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.BaseURL+"/chat/completions", bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("llm: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if o.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+o.APIKey)
	}
	resp, err := o.Client.Do(req)
	if err != nil {
		return "", idflow.WrapError(idflow.EUNAVAILABLE, "the model is unavailable", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", idflow.WrapError(idflow.EUNAVAILABLE, "the model is unavailable", fmt.Errorf("status %d", resp.StatusCode))
	}
	var out struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&out); err != nil {
		return "", idflow.WrapError(idflow.EUNAVAILABLE, "the model answered garbage", err)
	}
	if len(out.Choices) == 0 {
		return "", idflow.Errorf(idflow.EUNAVAILABLE, "the model answered nothing")
	}
	return out.Choices[0].Message.Content, nil
}
