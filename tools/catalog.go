package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/service"
)

// ActionCall is the audit action of every tool call, on every channel.
const ActionCall = "tool.call"

// Channel is where a tool call comes from; the audit trail records it.
type Channel string

// The channels that call tools.
const (
	ChannelAgent    Channel = "agent"
	ChannelWorkflow Channel = "workflow"
	ChannelMCP      Channel = "mcp"
)

type channelKey struct{}

// WithChannel returns ctx for tool calls made through ch. A call whose
// context names no channel is recorded as an agent's.
func WithChannel(ctx context.Context, ch Channel) context.Context {
	return context.WithValue(ctx, channelKey{}, ch)
}

func channelOf(ctx context.Context) Channel {
	if ch, ok := ctx.Value(channelKey{}).(Channel); ok && ch != "" {
		return ch
	}
	return ChannelAgent
}

// Defaults of Config.
const (
	DefaultMaxArgumentBytes = 64 << 10
	DefaultMaxResultBytes   = 64 << 10
	DefaultSourceTimeout    = 5 * time.Second
)

// Bounds on what the sources and the audit trail take in.
const (
	maxSourceTools     = 256      // tools taken from one source
	maxSchemaBytes     = 64 << 10 // a source tool's parameter schema
	maxAuditedRemovals = 8        // identity arguments audited one by one per call
	maxErrorContent    = 4 << 10  // an error result's text
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidName reports whether name may name a tool: [A-Za-z0-9_-], at most
// 64 characters (what model APIs accept as a function name).
func ValidName(name string) bool { return nameRE.MatchString(name) }

// Config bounds the catalog.
type Config struct {
	// MaxArgumentBytes bounds a call's arguments (default 64 KiB;
	// ingest_document takes up to 1 MiB).
	MaxArgumentBytes int
	// MaxResultBytes bounds a result's JSON text (default 64 KiB); a larger
	// one is answered truncated (see truncate).
	MaxResultBytes int
	// SourceTimeout bounds how long the sources may take to list a user's
	// tools (default 5s); a source that has not answered by then is left
	// out of that listing.
	SourceTimeout time.Duration
}

// Runs starts workflow runs as a user (runner.Runner). It is an interface
// because the runner itself calls the catalog for its tool steps.
type Runs interface {
	Start(ctx context.Context, p idflow.Principal, workflowID string, input json.RawMessage, version int) (idflow.Run, error)
}

// Connections is the connect flow's disconnect (connections.Manager), the
// same code DELETE /api/v1/connections/{provider} runs: it revokes p's
// tokens at the provider when it offers revocation, forgets them, and
// audits connection.delete.
type Connections interface {
	Disconnect(ctx context.Context, p idflow.Principal, provider string) error
}

// Deps are the catalog's collaborators.
type Deps struct {
	Svc *service.Service // required
	// Runs starts workflow runs; nil leaves start_workflow out.
	Runs Runs
	// Downstream reaches users' downstream connections; nil (no provider
	// configured) leaves downstream_get out, and list_connections answers
	// an empty list.
	Downstream idflow.Downstream
	// Connections revokes a user's own connections; nil (no provider
	// configured) leaves disconnect out.
	Connections Connections
	// Sources add tools that are not built in (downstream MCP servers).
	Sources []Source
	Log     *slog.Logger
}

// Catalog is idflow's one tool catalog (idflow.ToolCatalog): the built-in
// tools and those of every Source, gated by the policy, each call run as
// the caller, its arguments stripped of identity, bounded and audited.
type Catalog struct {
	cfg      Config
	svc      *service.Service
	sources  []Source
	log      *slog.Logger
	builtins map[string]*builtin
}

var _ idflow.ToolCatalog = (*Catalog)(nil)

// New returns the catalog.
func New(cfg Config, d Deps) (*Catalog, error) {
	if d.Svc == nil {
		return nil, errors.New("tools: the service is required")
	}
	if cfg.MaxArgumentBytes <= 0 {
		cfg.MaxArgumentBytes = DefaultMaxArgumentBytes
	}
	if cfg.MaxResultBytes <= 0 {
		cfg.MaxResultBytes = DefaultMaxResultBytes
	}
	cfg.MaxResultBytes = max(cfg.MaxResultBytes, 1<<10) // room for the truncation notice
	if cfg.SourceTimeout <= 0 {
		cfg.SourceTimeout = DefaultSourceTimeout
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	c := &Catalog{cfg: cfg, svc: d.Svc, sources: slices.Clone(d.Sources), log: d.Log, builtins: map[string]*builtin{}}
	bs, err := builtins(d)
	if err != nil {
		return nil, err
	}
	for _, b := range bs {
		c.builtins[b.Name] = b
	}
	return c, nil
}

// ToolsFor lists the tools p may use, sorted by name: the built-ins the
// policy opens to p, and the tools each Source offers p that the policy
// opens too.
func (c *Catalog) ToolsFor(ctx context.Context, p idflow.Principal) ([]idflow.ToolSpec, error) {
	if _, err := p.Owner(); err != nil {
		return nil, err
	}
	pol := c.svc.Policy()
	out := []idflow.ToolSpec{}
	for _, b := range c.builtins {
		if pol.ToolAllowed(p, b.Name) {
			out = append(out, b.ToolSpec)
		}
	}
	for _, t := range c.sourceTools(ctx, p) {
		if pol.ToolAllowed(p, t.Name) {
			out = append(out, t.ToolSpec)
		}
	}
	slices.SortFunc(out, func(a, b idflow.ToolSpec) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// OpenWorld reports whether the tool name reaches beyond idflow's own data
// (the MCP openWorldHint): downstream_get and every tool of a Source.
func (c *Catalog) OpenWorld(name string) bool {
	if b, ok := c.builtins[name]; ok {
		return b.openWorld
	}
	return true
}

// CallTool runs call as p and answers its result; it never panics on bad
// input and never runs a tool p may not use. See docs/TOOLS.md for each
// refusal. Every call is audited as tool.call, resource tool/<name>.
func (c *Catalog) CallTool(ctx context.Context, p idflow.Principal, call idflow.ToolCall, offered []string) idflow.ToolResult {
	start := time.Now()
	ch := channelOf(ctx)
	defer func() {
		// A panicking tool is a bug: audited, then left to the channel's
		// own recovery (River fails the job, httpapi answers 500).
		if r := recover(); r != nil {
			c.audit(ctx, p, call.Name, ch, time.Since(start), idflow.Errorf(idflow.EINTERNAL, "the tool panicked"), 0)
			panic(r)
		}
	}()
	out, err := c.run(ctx, p, call, offered, ch)
	res := idflow.ToolResult{ToolCallID: call.ID, Name: call.Name}
	truncatedFrom := 0
	if err == nil {
		res.Content, truncatedFrom, err = c.encode(out)
	}
	if err == nil {
		res.OK = true
	} else {
		res.Err = err
		res.Content = clip(idflow.ErrorCode(err)+": "+idflow.ErrorMessage(err), maxErrorContent)
		if idflow.ErrorCode(err) == idflow.EINTERNAL {
			c.log.ErrorContext(ctx, "tool failed", "tool", clip(call.Name, 64), "channel", ch, "user_id", p.UserID, "err", err)
		}
	}
	c.audit(ctx, p, call.Name, ch, time.Since(start), err, truncatedFrom)
	return res
}

// run checks call and runs it.
func (c *Catalog) run(ctx context.Context, p idflow.Principal, call idflow.ToolCall, offered []string, ch Channel) (any, error) {
	if _, err := p.Owner(); err != nil {
		return nil, err
	}
	name := call.Name
	if !ValidName(name) {
		return nil, idflow.Errorf(idflow.EINVALID, "unknown tool %q", clip(name, 64))
	}
	if offered != nil && !slices.Contains(offered, name) {
		return nil, idflow.Errorf(idflow.EFORBIDDEN, "the tool %s was not offered for this turn; only offered tools can be called", name)
	}
	if idflow.InToolCall(ctx) {
		return nil, idflow.Errorf(idflow.EFORBIDDEN, "%s was called from inside another tool call; tools cannot call tools", name)
	}
	if err := c.svc.Policy().CheckTool(p, name); err != nil {
		return nil, err
	}
	tool, b, err := c.lookup(ctx, p, name)
	if err != nil {
		return nil, err
	}
	limit := c.cfg.MaxArgumentBytes
	if b != nil {
		limit = max(limit, b.maxArgs)
	}
	args, err := prepareArguments(call.Arguments, limit, b != nil)
	if err != nil {
		return nil, err
	}
	c.auditRemoved(ctx, p, name, ch, args.removed)
	if b != nil {
		if err := b.validate(args.raw); err != nil {
			return nil, err
		}
	}
	return tool.Run(idflow.WithinToolCall(ctx), p, args.raw)
}

// lookup finds the tool name among those p may use.
func (c *Catalog) lookup(ctx context.Context, p idflow.Principal, name string) (Tool, *builtin, error) {
	if b, ok := c.builtins[name]; ok {
		return b.Tool, b, nil
	}
	if !slices.Contains(builtinNames, name) {
		if t, ok := c.findSourceTool(ctx, p, name); ok {
			return t, nil, nil
		}
	}
	return Tool{}, nil, idflow.Errorf(idflow.EINVALID, "unknown tool %q", name)
}

// findSourceTool finds the source tool name as sourceTools would list it:
// the first source's that offers a valid one. A Finder is asked for that
// one tool, so a call costs the same whatever the size of the catalog;
// another source is listed.
func (c *Catalog) findSourceTool(ctx context.Context, p idflow.Principal, name string) (Tool, bool) {
	for i, src := range c.sources {
		f, ok := src.(Finder)
		if !ok {
			for _, t := range c.sourceTools(ctx, p) {
				if t.Name == name {
					return t, true
				}
			}
			return Tool{}, false
		}
		fctx, cancel := context.WithTimeout(ctx, c.cfg.SourceTimeout)
		t, found, err := f.Tool(fctx, p, name)
		cancel()
		switch {
		case err != nil:
			c.log.WarnContext(ctx, "a tool source failed; its tools are left out", "source", i, "user_id", p.UserID, "err", err)
		case found && t.Name == name:
			if reason := refusal(t); reason != "" {
				c.log.WarnContext(ctx, "a source tool is refused", "source", i, "tool", clip(t.Name, 80), "reason", reason)
				continue
			}
			return serverOf(t), true
		}
	}
	return Tool{}, false
}

// sourceTools merges the tools the sources offer p, asked at once and
// for at most SourceTimeout. A tool with an invalid name or schema, or
// whose name a built-in or an earlier source already has, is left out and
// logged.
func (c *Catalog) sourceTools(ctx context.Context, p idflow.Principal) []Tool {
	if len(c.sources) == 0 {
		return nil
	}
	type answer struct {
		i     int
		tools []Tool
		err   error
	}
	sctx, cancel := context.WithTimeout(ctx, c.cfg.SourceTimeout)
	defer cancel()
	answers := make(chan answer, len(c.sources)) // buffered: a late source never blocks
	for i, src := range c.sources {
		go func() {
			ts, err := src.Tools(sctx, p)
			answers <- answer{i, ts, err}
		}()
	}
	lists := make([][]Tool, len(c.sources))
wait:
	for range c.sources {
		select {
		case a := <-answers:
			if a.err != nil {
				c.log.WarnContext(ctx, "a tool source failed; its tools are left out", "source", a.i, "user_id", p.UserID, "err", a.err)
				continue
			}
			lists[a.i] = a.tools
		case <-sctx.Done():
			c.log.WarnContext(ctx, "tool sources did not answer in time; theirs are left out", "timeout", c.cfg.SourceTimeout, "user_id", p.UserID)
			break wait
		}
	}
	seen := map[string]bool{}
	var out []Tool
	for i, ts := range lists {
		if len(ts) > maxSourceTools {
			c.log.WarnContext(ctx, "a tool source offers too many tools; the rest are left out", "source", i, "tools", len(ts), "limit", maxSourceTools)
			ts = ts[:maxSourceTools]
		}
		for _, t := range ts {
			reason := refusal(t)
			if reason == "" && seen[t.Name] {
				reason = "the name of another source's tool"
			}
			if reason != "" {
				c.log.WarnContext(ctx, "a source tool is refused", "source", i, "tool", clip(t.Name, 80), "reason", reason)
				continue
			}
			seen[t.Name] = true
			out = append(out, serverOf(t))
		}
	}
	return out
}

// refusal is why the catalog refuses a source's tool t, or "".
func refusal(t Tool) string {
	switch {
	case !ValidName(t.Name):
		return "invalid name"
	case slices.Contains(builtinNames, t.Name):
		return "the name of a built-in tool"
	case t.Run == nil:
		return "no Run"
	case !objectSchema(t.Parameters):
		return "parameters are not a JSON Schema object"
	}
	return ""
}

// serverOf is t with its server named: a source's tool is never taken for
// a built-in.
func serverOf(t Tool) Tool {
	if t.Server == "" {
		t.Server, _, _ = strings.Cut(t.Name, "__")
	}
	return t
}

// objectSchema reports whether raw is a JSON object of bounded size.
func objectSchema(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && len(raw) <= maxSchemaBytes && raw[0] == '{' && json.Valid(raw)
}

// encode answers out as JSON text of at most MaxResultBytes, and the size
// it had when it had to be truncated.
func (c *Catalog) encode(out any) (string, int, error) {
	b, err := encodeNoHTML(out)
	if err != nil {
		return "", 0, idflow.WrapError(idflow.EINTERNAL, "the tool's result could not be encoded", err)
	}
	if len(b) <= c.cfg.MaxResultBytes {
		return string(b), 0, nil
	}
	return truncate(b, c.cfg.MaxResultBytes), len(b), nil
}

// truncated replaces a result over the limit: still a JSON object (a
// workflow step's output must be JSON, and a model reads it as it reads
// any result), with the start of the JSON text.
type truncated struct {
	Truncated bool   `json:"truncated"`
	Bytes     int    `json:"bytes"` // the full result's size
	Limit     int    `json:"limit"`
	Head      string `json:"head"` // the result's JSON text, cut
}

// truncate answers a truncated of at most limit bytes for the JSON text b.
func truncate(b []byte, limit int) string {
	n := limit
	for n > 0 {
		for n > 0 && n < len(b) && !utf8.RuneStart(b[n]) {
			n--
		}
		enc, _ := encodeNoHTML(truncated{true, len(b), limit, string(b[:n])}) // strings and ints always encode
		if len(enc) <= limit {
			return string(enc)
		}
		// Escaping only grows the head: dropping the excess fits it.
		n -= len(enc) - limit
	}
	enc, _ := encodeNoHTML(truncated{true, len(b), limit, ""})
	return string(enc)
}

// encodeNoHTML is json.Marshal without escaping <, > and &: the text is
// read by models and programs, never put into HTML unescaped.
func encodeNoHTML(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// audit records a call: tool.call, resource tool/<name>, the outcome, and
// the channel and duration (with the error, if any) as the detail.
func (c *Catalog) audit(ctx context.Context, p idflow.Principal, name string, ch Channel, d time.Duration, err error, truncatedFrom int) {
	outcome := idflow.OutcomeSuccess
	detail := fmt.Sprintf("channel=%s duration_ms=%.3f", ch, float64(d.Microseconds())/1000)
	if truncatedFrom > 0 {
		detail += fmt.Sprintf(" result_truncated_from_bytes=%d", truncatedFrom)
	}
	if err != nil {
		outcome = idflow.OutcomeFailure
		switch idflow.ErrorCode(err) {
		case idflow.ENOTFOUND, idflow.EFORBIDDEN, idflow.EUNAUTHORIZED:
			outcome = idflow.OutcomeDenied
		}
		detail += " error=" + clip(idflow.ErrorCode(err)+": "+idflow.ErrorMessage(err), 300)
	}
	c.record(ctx, p, "tool/"+resourceName(name), outcome, detail)
}

// auditRemoved records each identity argument removed from a call as a
// refused attempt to act as someone else (at most maxAuditedRemovals one
// by one, then one event for the rest).
func (c *Catalog) auditRemoved(ctx context.Context, p idflow.Principal, name string, ch Channel, removed []string) {
	slices.Sort(removed)
	for i, path := range removed {
		if i == maxAuditedRemovals {
			c.record(ctx, p, "tool/"+name+"/argument/…", idflow.OutcomeDenied,
				fmt.Sprintf("channel=%s %d more arguments naming a user removed", ch, len(removed)-i))
			return
		}
		c.record(ctx, p, clip("tool/"+name+"/argument"+path, 200), idflow.OutcomeDenied,
			fmt.Sprintf("channel=%s argument removed before the tool ran: tools act as the caller", ch))
	}
}

// record writes one audit record of a call: before CallTool answers, or,
// under idflow.WithBackgroundAudits (an agent turn), beside what follows.
func (c *Catalog) record(ctx context.Context, p idflow.Principal, resource, outcome, detail string) {
	if _, err := p.Owner(); err != nil {
		return // nobody to attribute it to; the call was refused
	}
	info := idflow.RequestInfoFrom(ctx)
	wctx := context.WithoutCancel(ctx)
	idflow.AuditWrite(ctx, func() {
		_, err := c.svc.Store().RecordAudit(wctx, idflow.AuditEvent{
			UserID: p.UserID, TenantID: p.TenantID, Action: ActionCall, Resource: resource,
			Outcome: outcome, RequestID: info.RequestID, Peer: info.Peer, Detail: detail,
		})
		if err != nil {
			c.log.ErrorContext(wctx, "audit write failed", "action", ActionCall, "err", err)
		}
	})
}

// resourceName is name as the audit trail shows it: a name that is not a
// valid tool name is not copied there.
func resourceName(name string) string {
	if ValidName(name) {
		return name
	}
	return "?"
}
