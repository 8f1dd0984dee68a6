package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"
	"github.com/openai/openai-go/v3/shared"

	"github.com/idflow/idflow"
)

// Defaults of OpenAIConfig.
const (
	DefaultTimeout          = 2 * time.Minute
	DefaultMaxRetries       = 2
	DefaultMaxResponseBytes = 8 << 20
	DefaultMaxToolCalls     = 16
	DefaultMaxArgumentBytes = 64 << 10
	// maxTokens caps one call's reported token counts, so a server cannot
	// make the usage sums overflow.
	maxTokens = 1 << 40
	// maxIdleConnsPerHost is how many connections to the model server are
	// kept open between requests.
	maxIdleConnsPerHost = 256
)

// OpenAIConfig configures the client of an OpenAI-compatible API.
type OpenAIConfig struct {
	BaseURL string // the API's base, e.g. https://api.openai.com/v1
	APIKey  string // sent as a bearer token; empty sends none
	Model   string // asked when a request names no model (or the echo model)
	// UserKey keys HashedUser, the `user` sent with each request; at least
	// MinUserKeyLen bytes.
	UserKey []byte
	// Timeout bounds each attempt, a streamed answer included; 0 is
	// DefaultTimeout.
	Timeout time.Duration
	// MaxRetries is how many times a request is sent again after a
	// connection error, 408, 409, 429 or 5xx, with exponential backoff that
	// honours Retry-After; never once an answer has begun. Negative is 0.
	MaxRetries int
	// Bounds of one answer (0: the defaults): its bytes on the wire, the
	// tool calls in it, and each call's arguments.
	MaxResponseBytes int64
	MaxToolCalls     int
	MaxArgumentBytes int
}

// OpenAI is an idflow.ChatModel on an OpenAI-compatible Chat Completions
// API, through the official openai-go client.
type OpenAI struct {
	cfg  OpenAIConfig
	chat openai.ChatCompletionService
}

// NewOpenAI returns a client for cfg. The SDK's environment variables
// (OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_ORG_ID, …) are never read: cfg
// is the whole configuration.
func NewOpenAI(cfg OpenAIConfig) (*OpenAI, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("llm: the model URL must be an absolute http(s) URL")
	}
	if cfg.Model == "" {
		return nil, errors.New("llm: a model name is required")
	}
	if len(cfg.UserKey) < MinUserKeyLen {
		return nil, fmt.Errorf("llm: the user key must have at least %d bytes", MinUserKeyLen)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	cfg.MaxRetries = max(cfg.MaxRetries, 0)
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.MaxToolCalls <= 0 {
		cfg.MaxToolCalls = DefaultMaxToolCalls
	}
	if cfg.MaxArgumentBytes <= 0 {
		cfg.MaxArgumentBytes = DefaultMaxArgumentBytes
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// Keep a connection per concurrent turn: net/http's default of 2 idle
	// per host made every turn past the second dial (and on TLS shake
	// hands) anew (docs/BENCHMARKS.md, "Agent runtime").
	transport.MaxIdleConnsPerHost = maxIdleConnsPerHost
	client := &http.Client{Transport: limitedTransport{next: transport, max: cfg.MaxResponseBytes}}
	// The service, not openai.NewClient: the client would add defaults from
	// the process environment.
	chat := openai.NewChatCompletionService(
		option.WithBaseURL(cfg.BaseURL),
		option.WithAPIKey(cfg.APIKey),
		option.WithHTTPClient(client),
		option.WithMaxRetries(cfg.MaxRetries),
		option.WithRequestTimeout(cfg.Timeout),
	)
	return &OpenAI{cfg: cfg, chat: chat}, nil
}

// Chat asks the model, as p: p's hashed id goes as `user`, never the id.
// With onDelta the answer is streamed, and its usage asked for in the last
// chunk. A failed call answers an EUNAVAILABLE error whose message and
// cause carry no key and nothing the provider wrote; when ctx ends first,
// its error.
func (o *OpenAI) Chat(ctx context.Context, p idflow.Principal, req idflow.ChatRequest, onDelta func(string) error) (idflow.ChatResponse, error) {
	if _, err := p.Owner(); err != nil {
		return idflow.ChatResponse{}, err // a model call is always on a user's behalf
	}
	model := req.Model
	if model == "" || model == EchoModelName {
		model = o.cfg.Model
	}
	params, err := o.params(p, model, req)
	if err != nil {
		return idflow.ChatResponse{}, err
	}
	if onDelta == nil {
		cc, err := o.chat.New(ctx, params)
		if err != nil {
			return idflow.ChatResponse{}, o.fail(ctx, err)
		}
		return o.answer(ctx, model, cc)
	}
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := o.chat.NewStreaming(ctx, params)
	defer stream.Close()
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		chunk := stream.Current()
		if !acc.AddChunk(chunk) {
			return idflow.ChatResponse{}, o.fail(ctx, errors.New("a chunk does not fit the stream"))
		}
		if err := o.within(&acc.ChatCompletion); err != nil {
			return idflow.ChatResponse{}, o.fail(ctx, err)
		}
		for _, c := range chunk.Choices {
			if c.Index == 0 && c.Delta.Content != "" {
				if err := onDelta(c.Delta.Content); err != nil {
					return idflow.ChatResponse{}, err
				}
			}
		}
	}
	if err := stream.Err(); err != nil {
		return idflow.ChatResponse{}, o.fail(ctx, err)
	}
	return o.answer(ctx, model, &acc.ChatCompletion)
}

func (o *OpenAI) params(p idflow.Principal, model string, req idflow.ChatRequest) (openai.ChatCompletionNewParams, error) {
	params := openai.ChatCompletionNewParams{Model: model, User: openai.String(HashedUser(o.cfg.UserKey, p))}
	for _, m := range req.Messages {
		msg, err := message(m)
		if err != nil {
			return params, err
		}
		params.Messages = append(params.Messages, msg)
	}
	for _, t := range req.Tools {
		schema := shared.FunctionParameters{"type": "object", "properties": map[string]any{}}
		if len(t.Parameters) > 0 {
			schema = shared.FunctionParameters{}
			if err := json.Unmarshal(t.Parameters, &schema); err != nil {
				return params, idflow.WrapError(idflow.EINTERNAL, "a tool's parameters are not a JSON object", fmt.Errorf("llm: tool %s: %w", t.Name, err))
			}
		}
		fn := shared.FunctionDefinitionParam{Name: t.Name, Parameters: schema}
		if t.Description != "" {
			fn.Description = openai.String(t.Description)
		}
		params.Tools = append(params.Tools, openai.ChatCompletionFunctionTool(fn))
	}
	return params, nil
}

func message(m idflow.ChatMessage) (openai.ChatCompletionMessageParamUnion, error) {
	switch m.Role {
	case "system":
		return openai.SystemMessage(m.Content), nil
	case "user":
		return openai.UserMessage(m.Content), nil
	case "tool":
		return openai.ToolMessage(m.Content, m.ToolCallID), nil
	case "assistant":
		if len(m.ToolCalls) == 0 {
			return openai.AssistantMessage(m.Content), nil
		}
		var a openai.ChatCompletionAssistantMessageParam
		if m.Content != "" {
			a.Content.OfString = openai.String(m.Content)
		}
		for _, c := range m.ToolCalls {
			args := string(c.Arguments)
			if args == "" {
				args = "{}"
			}
			a.ToolCalls = append(a.ToolCalls, openai.ChatCompletionMessageToolCallUnionParam{
				OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{ID: c.ID,
					Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{Name: c.Name, Arguments: args}}})
		}
		return openai.ChatCompletionMessageParamUnion{OfAssistant: &a}, nil
	}
	return openai.ChatCompletionMessageParamUnion{}, idflow.Errorf(idflow.EINTERNAL, "a message has the unknown role %q", m.Role)
}

// within checks an answer, whole or accumulating, against the bounds.
func (o *OpenAI) within(cc *openai.ChatCompletion) error {
	if len(cc.Choices) == 0 {
		return nil
	}
	calls := cc.Choices[0].Message.ToolCalls
	if len(calls) > o.cfg.MaxToolCalls {
		return &limitError{fmt.Sprintf("more than %d tool calls", o.cfg.MaxToolCalls)}
	}
	for _, c := range calls {
		if len(c.Function.Arguments) > o.cfg.MaxArgumentBytes {
			return &limitError{fmt.Sprintf("tool call arguments over %d bytes", o.cfg.MaxArgumentBytes)}
		}
	}
	return nil
}

func (o *OpenAI) answer(ctx context.Context, model string, cc *openai.ChatCompletion) (idflow.ChatResponse, error) {
	if err := o.within(cc); err != nil {
		return idflow.ChatResponse{}, o.fail(ctx, err)
	}
	if len(cc.Choices) == 0 {
		return idflow.ChatResponse{}, idflow.Errorf(idflow.EUNAVAILABLE, "the model answered nothing")
	}
	msg := cc.Choices[0].Message
	resp := idflow.ChatResponse{Model: model, Content: msg.Content, Usage: idflow.Usage{
		PromptTokens: min(max(cc.Usage.PromptTokens, 0), maxTokens), CompletionTokens: min(max(cc.Usage.CompletionTokens, 0), maxTokens)}}
	if resp.Content == "" {
		resp.Content = msg.Refusal
	}
	for _, c := range msg.ToolCalls {
		if c.Type != "" && c.Type != "function" {
			continue // only function tools are offered
		}
		id := c.ID
		if id == "" { // some compatible servers send none
			id = idflow.NewID("call_")
		}
		resp.ToolCalls = append(resp.ToolCalls, idflow.ToolCall{ID: id, Name: c.Function.Name, Arguments: arguments(c.Function.Arguments)})
	}
	return resp, nil
}

// arguments turns a model's arguments text into JSON: none is {}; text that
// is not JSON becomes a JSON string, which the catalog refuses as not an
// object (the model reads why and may try again).
func arguments(s string) json.RawMessage {
	s = strings.TrimSpace(s)
	if s == "" {
		return json.RawMessage(`{}`)
	}
	if json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	b, _ := json.Marshal(s) // a string always marshals
	return b
}

// fail maps a failed call to an idflow error. The SDK's *openai.Error
// holds the request (its Authorization header) and the provider's words
// (which may quote part of the key): neither stays in the chain.
func (o *OpenAI) fail(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("llm: %w", context.Cause(ctx))
	}
	var limit *limitError
	if errors.As(err, &limit) {
		return idflow.WrapError(idflow.EUNAVAILABLE, "the model's answer is over idflow's limits", fmt.Errorf("llm: %s", limit.what))
	}
	var apiErr *openai.Error
	if errors.As(err, &apiErr) {
		cause := fmt.Errorf("llm: status %d (type %q, code %q)", apiErr.StatusCode, apiErr.Type, apiErr.Code)
		switch s := apiErr.StatusCode; {
		case s == http.StatusTooManyRequests:
			return idflow.WrapError(idflow.EUNAVAILABLE, "the model is rate limited; try again later", cause)
		case s == http.StatusUnauthorized || s == http.StatusForbidden:
			return idflow.WrapError(idflow.EUNAVAILABLE, "the model refused idflow's credentials", cause)
		case s >= 500:
			return idflow.WrapError(idflow.EUNAVAILABLE, "the model is unavailable", cause)
		default:
			return idflow.WrapError(idflow.EUNAVAILABLE, "the model refused the request", cause)
		}
	}
	var streamErr *ssestream.StreamError
	if errors.As(err, &streamErr) {
		return idflow.WrapError(idflow.EUNAVAILABLE, "the model failed while answering", errors.New("llm: an error event in the stream"))
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return idflow.WrapError(idflow.EUNAVAILABLE, "the model did not answer in time", fmt.Errorf("llm: %w", err))
	}
	return idflow.WrapError(idflow.EUNAVAILABLE, "the model is unavailable", fmt.Errorf("llm: %w", err))
}

// limitError is an answer over one of the bounds.
type limitError struct{ what string }

func (e *limitError) Error() string { return "llm: the answer has " + e.what }

// limitedTransport ends every response body after max bytes with a
// limitError, whole answers and streams alike.
type limitedTransport struct {
	next http.RoundTripper
	max  int64
}

func (t limitedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err == nil {
		resp.Body = &limitedBody{rc: resp.Body, left: t.max}
	}
	return resp, err
}

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// A body of exactly max bytes ends here; a longer one is refused.
		var one [1]byte
		if n, err := b.rc.Read(one[:]); n == 0 {
			return 0, err
		}
		return 0, &limitError{"more bytes than allowed"}
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
