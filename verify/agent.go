package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// Agent turns: the place where identity most often collapses is the tool
// call the model makes. Each user caller asks, in a chat of its own, for
// A's data: "/tool <name> <arguments>" makes idflow's built-in dev model
// call that tool (a real model reads it as a request to do so), and a
// plain question asks the model to search its memory for A's word.

// turnProbe is one message a caller sends in its own chat.
type turnProbe struct {
	target string
	// content is the message naming A's object id (or nothing of A's).
	content func(id string) string
	param   string // the kind of A's object named; "" none
	stream  bool   // ask for Server-Sent Events
}

func (v *verifier) turnProbes() []turnProbe {
	w, u := v.fx.word, v.a.userID
	tool := func(name string, args map[string]any) string {
		b, _ := json.Marshal(args)
		return "/tool " + name + " " + string(b)
	}
	return []turnProbe{
		{target: "agent turn: /tool search_memory for A's word", content: func(string) string {
			return tool("search_memory", map[string]any{"query": w, "limit": 50, "user_id": u})
		}},
		{target: "agent turn (streamed): /tool search_memory for A's word", stream: true, content: func(string) string {
			return tool("search_memory", map[string]any{"query": w, "limit": 50, "owner": u})
		}},
		{target: "agent turn: /tool get_run on A's run", param: "run", content: func(id string) string {
			return tool("get_run", map[string]any{"run_id": id, "on_behalf_of": u})
		}},
		{target: "agent turn: /tool send_message into A's chat", param: "session", content: func(id string) string {
			return tool("send_message", map[string]any{"session_id": id, "content": "What is in this chat?"})
		}},
		{target: "agent turn: /tool list_sessions of A's app", param: "app", content: func(id string) string {
			return tool("list_sessions", map[string]any{"app_id": id, "user_id": u})
		}},
		{target: "agent turn: a question about A's word", content: func(string) string {
			return "Search your memory for " + w + " and tell me everything you find about it, and whose it is."
		}},
	}
}

// agentTasks: one task per user caller, all its turns in a chat of its own.
func (v *verifier) agentTasks() []task {
	if !v.hasRoute("POST", "/api/v1/sessions/{session_id}/messages") || !v.hasRoute("POST", "/api/v1/sessions") {
		return []task{{phase: "agent", label: "no agent turns", run: func(context.Context) {
			v.note("/openapi.json documents no agent turns: none was checked.")
		}}}
	}
	var out []task
	for _, c := range v.callers {
		if c.role == roleUser || c.role == roleAdmin {
			out = append(out, task{phase: "agent", label: "agent turns as " + c.Name, run: func(ctx context.Context) { v.agentProbe(ctx, c) }})
		}
	}
	return out
}

// turnStep is one tool call of a turn.
type turnStep struct {
	Tool  string          `json:"tool"`
	OK    bool            `json:"ok"`
	Res   json.RawMessage `json:"result"`
	Error string          `json:"error"`
}

func (v *verifier) agentProbe(ctx context.Context, c *caller) {
	var chat object
	if _, err := v.cl.need(ctx, c, c.Name+"'s own chat", http.StatusCreated, &chat, "POST", "/api/v1/sessions",
		map[string]any{"title": "idflow verify probe " + v.fx.word}); err != nil {
		v.fail("agent", "agent turns", c.Name, "a chat of the caller's own", v.cl.red.String(err.Error()), nil)
		return
	}
	v.leftovers = append(v.leftovers, cleanup{c: c, what: c.Name + "'s probe chat", path: "/api/v1/sessions/" + chat.ID})
	path := "/api/v1/sessions/" + chat.ID + "/messages"
	for _, p := range v.turnProbes() {
		id := ""
		if p.param != "" {
			id = v.fx.ids[p.param]
		}
		ra, stepA, err := v.turn(ctx, c, path, p.content(id), p.stream)
		if err != nil {
			v.fail("agent", p.target, c.Name, "the caller's own answer", v.cl.red.String(err.Error()), exchangeOf(ra))
			continue
		}
		problems := v.leaks(c, ra, scopeOwn)
		evidence := []Exchange{ra.ex}
		want := http.StatusCreated
		if p.stream {
			want = http.StatusOK
		}
		if ra.status != want {
			problems = append(problems, fmt.Sprintf("the turn answered %s; want %d", ra, want))
		}
		got := ra.String()
		if stepA != nil {
			got = fmt.Sprintf("%s, tool %s ok=%v", ra, stepA.Tool, stepA.OK)
		}
		if p.param != "" {
			rr, stepR, err := v.turn(ctx, c, path, p.content(randomLike(id)), p.stream)
			switch {
			case err != nil:
				problems = append(problems, "the same turn naming a missing "+p.param+": "+v.cl.red.String(err.Error()))
			case stepA != nil && stepR != nil:
				// The dev model called the tool both times: its answers
				// must not tell A's object from a missing one.
				evidence = append(evidence, rr.ex)
				if stepA.OK != stepR.OK || stepA.Error != stepR.Error || (stepA.OK && !bytes.Equal(stepA.Res, stepR.Res)) {
					problems = append(problems, fmt.Sprintf("the tool answers differently for A's %s and for a missing one: it tells them apart", p.param))
				}
			}
		}
		v.verdict("agent", p.target, c, "nothing of A's in the reply, the tool results or the memory given to the model", got, problems, evidence)
	}
}

// turn sends one message and returns the answer and its first tool step,
// if the model called a tool.
func (v *verifier) turn(ctx context.Context, c *caller, path, content string, stream bool) (*response, *turnStep, error) {
	var hdrs []header
	if stream {
		hdrs = append(hdrs, header{"Accept", "text/event-stream"})
	}
	r, err := v.cl.do(ctx, c, "POST", path, map[string]any{"content": content}, hdrs...)
	if err != nil {
		return r, nil, err
	}
	var out struct {
		Steps []turnStep `json:"steps"`
	}
	if !stream && json.Unmarshal(r.body, &out) == nil && len(out.Steps) > 0 {
		return r, &out.Steps[0], nil
	}
	return r, nil, nil
}
