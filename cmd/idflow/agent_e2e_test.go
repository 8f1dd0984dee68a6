package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/internal/llmtest"
	"github.com/idflow/idflow/internal/testsvc"
)

// End-to-end tests of the agent runtime (docs/AGENTS.md) with real components
// only: the idflow binary's run() in production mode, the scripted
// OpenAI-compatible model server (internal/llmtest) reached through the
// real openai-go client (IDFLOW_LLM_URL), and the downstream MCP server of
// testdata/downstreammcp (the official TypeScript SDK, verifying idflow's
// assertions with jose against /.well-known/idflow/jwks.json), named in
// IDFLOW_MCP_SERVERS_FILE with auth type assertion and groups.

// e2eGroup is the one group the downstream server "tickets" is open to.
const e2eGroup = "engineering"

// e2eModel is IDFLOW_LLM_MODEL of the agent tests.
const e2eModel = "e2e-model"

// e2eRig is idflow with a scripted model and the TypeScript downstream
// server "tickets" (groups: e2eGroup).
type e2eRig struct {
	*prodServer
	DS     *testsvc.DownstreamMCP
	Model  *llmtest.Server
	Public string // idflow's public URL: the iss of its assertions
}

// startE2ERig starts the downstream server, then idflow at a fixed
// address (the downstream trusts its JWKS, fetched on first use). respond
// answers the model requests; nil keeps the built-in echo model.
func startE2ERig(t *testing.T, respond func(*llmtest.Request) llmtest.Reply) *e2eRig {
	t.Helper()
	addr := freeAddr(t)
	public := "http://" + addr
	ds := testsvc.StartDownstreamMCP(t, public, public+"/.well-known/idflow/jwks.json")
	servers := filepath.Join(t.TempDir(), "mcp-servers.json")
	writeFile(t, servers, fmt.Sprintf(`{"servers": [{"name": "tickets", "url": %q, "auth": {"type": "assertion"}, "groups": [%q]}]}`, ds.URL, e2eGroup))
	env := map[string]string{"IDFLOW_LISTEN": addr, "IDFLOW_MCP_SERVERS_FILE": servers}
	rig := &e2eRig{DS: ds, Public: public}
	if respond != nil {
		rig.Model = llmtest.NewFunc(t, respond)
		env["IDFLOW_LLM_URL"] = rig.Model.URL
		env["IDFLOW_LLM_MODEL"] = e2eModel
		env["IDFLOW_LLM_MAX_RETRIES"] = "0"
	}
	rig.prodServer = startProdIdflow(t, env)
	return rig
}

// e2eToken is a token of a named user of the harness whose groups claim
// is groups.
func (s *prodServer) e2eToken(t testing.TB, who string, groups ...string) string {
	t.Helper()
	return s.Issuer.Sign(s.userClaims(t, who).With("groups", append([]string{}, groups...)))
}

// e2eStep is one step of a turn's answer.
type e2eStep struct {
	ID        string          `json:"id"`
	Tool      string          `json:"tool"`
	Arguments json.RawMessage `json:"arguments"`
	OK        bool            `json:"ok"`
	Result    json.RawMessage `json:"result"`
	Error     string          `json:"error"`
}

// e2eAnswer is the 201 answer of a turn, or the same gathered from its
// stream.
type e2eAnswer struct {
	Message idflow.Message `json:"message"`
	Reply   idflow.Message `json:"reply"`
	Steps   []e2eStep      `json:"steps"`
	Memory  []struct {
		ID      string `json:"id"`
		Content string `json:"content"`
	} `json:"memory"`
	Raw string // the whole answer as sent
}

// e2eEvent is one Server-Sent Event.
type e2eEvent struct {
	Name string
	Data json.RawMessage
}

// e2eReadEvents reads every event of a stream, failing on a line that is not
// part of the event syntax idflow writes.
func e2eReadEvents(t testing.TB, body []byte) []e2eEvent {
	t.Helper()
	var out []e2eEvent
	var cur e2eEvent
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.Name != "" {
				out = append(out, cur)
			}
			cur = e2eEvent{}
		case strings.HasPrefix(line, "event: "):
			cur.Name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.Data = json.RawMessage(strings.TrimPrefix(line, "data: "))
			if !json.Valid(cur.Data) {
				t.Fatalf("event %s: data is not JSON: %s", cur.Name, cur.Data)
			}
		case strings.HasPrefix(line, ":"): // a comment
		default:
			t.Fatalf("a line that is no part of an event: %q", line)
		}
	}
	if cur.Name != "" {
		t.Fatalf("the stream ends inside event %s", cur.Name)
	}
	return out
}

func e2eEventNames(evs []e2eEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Name)
	}
	return out
}

// e2ePost sends content to a session as the holder of token, with
// Accept: text/event-stream when stream, and reads the whole answer. It
// never fails the test, so that goroutines may call it.
func e2ePost(base, token, session, content string, stream bool, headers ...header) (reply, error) {
	body, err := json.Marshal(map[string]any{"content": content})
	if err != nil {
		return reply{}, err
	}
	req, err := http.NewRequest("POST", base+"/api/v1/sessions/"+session+"/messages", bytes.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if stream {
		req.Header.Set("Accept", "text/event-stream")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	for _, h := range headers {
		req.Header.Set(h.name, h.value)
	}
	resp, err := harnessClient.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("a turn on %s: %w", session, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, fmt.Errorf("a turn on %s: %w", session, err)
	}
	return reply{Method: "POST", Path: req.URL.Path, Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// e2eStreamTurn sends content to a session with Accept: text/event-stream
// and answers the events (none unless the status is 200). A 200 that is not
// an event stream fails the test.
func e2eStreamTurn(t testing.TB, base, token, session, content string, headers ...header) (reply, []e2eEvent) {
	t.Helper()
	r, err := e2ePost(base, token, session, content, true, headers...)
	if err != nil {
		t.Fatal(err)
	}
	return r, e2eEventsOf(t, r)
}

// e2eEventsOf reads the events of a streamed turn's answer: none unless
// its status is 200, which must come as text/event-stream.
func e2eEventsOf(t testing.TB, r reply) []e2eEvent {
	t.Helper()
	if r.Status != http.StatusOK {
		return nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("%s: Content-Type %q", r, ct)
	}
	return e2eReadEvents(t, r.Body)
}

// e2eOrderRE is the order of a successful turn's events.
var e2eOrderRE = regexp.MustCompile(`^message memory( delta)*( tool_call tool_result( delta)*)* reply done$`)

// e2eGather rebuilds a turn's answer from its events (which must end with
// reply, done), requiring the order message, memory, then tool_call and
// tool_result pairs and deltas, then reply and done; the deltas after the
// last tool result add up to the reply.
func e2eGather(t testing.TB, evs []e2eEvent) e2eAnswer {
	t.Helper()
	var a e2eAnswer
	names := strings.Join(e2eEventNames(evs), " ")
	if !e2eOrderRE.MatchString(names) {
		t.Fatalf("events in the order %q", names)
	}
	var calls []idflow.ToolCall
	var tail strings.Builder
	for _, e := range evs {
		var err error
		switch e.Name {
		case "message":
			err = json.Unmarshal(e.Data, &a.Message)
		case "memory":
			var m struct {
				Facts json.RawMessage `json:"facts"`
			}
			if err = json.Unmarshal(e.Data, &m); err == nil {
				err = json.Unmarshal(m.Facts, &a.Memory)
			}
		case "tool_call":
			var c idflow.ToolCall
			err = json.Unmarshal(e.Data, &c)
			calls = append(calls, c)
			tail.Reset()
		case "tool_result":
			var r idflow.ToolResult
			if err = json.Unmarshal(e.Data, &r); err == nil {
				c := calls[len(calls)-1]
				if r.ToolCallID != c.ID || r.Name != c.Name {
					t.Fatalf("tool_result %s follows tool_call %+v", e.Data, c)
				}
				st := e2eStep{ID: c.ID, Tool: c.Name, Arguments: c.Arguments, OK: r.OK}
				if r.OK {
					st.Result = json.RawMessage(r.Content)
				} else {
					st.Error = r.Content
				}
				a.Steps = append(a.Steps, st)
			}
		case "delta":
			var d struct{ Text string }
			err = json.Unmarshal(e.Data, &d)
			tail.WriteString(d.Text)
		case "reply":
			err = json.Unmarshal(e.Data, &a.Reply)
		}
		if err != nil {
			t.Fatalf("event %s %s: %v", e.Name, e.Data, err)
		}
	}
	if tail.String() != a.Reply.Content {
		t.Fatalf("the deltas after the last tool add up to %q; the reply is %q", tail.String(), a.Reply.Content)
	}
	return a
}

// turn runs one agent turn as the holder of token, as JSON or streamed,
// and answers it; any status but 201 (200 streamed) fails the test.
func (s *prodServer) e2eSay(t testing.TB, token, session, content string, stream bool, headers ...header) e2eAnswer {
	t.Helper()
	r, err := e2ePost(s.URL, token, session, content, stream, headers...)
	if err != nil {
		t.Fatal(err)
	}
	return e2eAnswerOf(t, r, stream)
}

// e2eAnswerOf reads a turn's answer: 201 JSON, or (streamed) 200 events.
func e2eAnswerOf(t testing.TB, r reply, stream bool) e2eAnswer {
	t.Helper()
	var a e2eAnswer
	if stream {
		mustStatus(t, r, http.StatusOK)
		a = e2eGather(t, e2eEventsOf(t, r))
	} else {
		mustStatus(t, r, http.StatusCreated)
		r.JSON(t, &a)
	}
	a.Raw = string(r.Body)
	return a
}

// e2eCreate POSTs body as the holder of token, requires 201 and answers the
// object's id.
func (s *prodServer) e2eCreate(t testing.TB, token, path string, body any) string {
	t.Helper()
	r := s.Do(t, "POST", path, token, body)
	mustStatus(t, r, http.StatusCreated)
	var o object
	r.JSON(t, &o)
	if o.ID == "" {
		t.Fatalf("%s: no id", r)
	}
	return o.ID
}

// e2eAgentSession makes an agent with tools and a session of it.
func (s *prodServer) e2eAgentSession(t testing.TB, token string, tools ...string) string {
	t.Helper()
	agent := s.e2eCreate(t, token, "/api/v1/agents", map[string]any{"name": "e2e agent", "instructions": "Use the tools.", "tools": tools})
	return s.e2eCreate(t, token, "/api/v1/sessions", map[string]any{"title": "e2e chat", "agent_id": agent})
}

// e2eWho is what the downstream's whoami answers: the claims it
// verified, and the owner of the MCP session the call came on.
type e2eWho struct {
	Sub          string   `json:"sub"`
	Tid          string   `json:"tid"`
	Email        string   `json:"email"`
	Groups       []string `json:"groups"`
	Iss          string   `json:"iss"`
	Aud          string   `json:"aud"`
	Lifetime     int      `json:"lifetime"`
	SessionOwner string   `json:"session_owner"`
}

// e2eLastUser is the text of the newest user message of a model request:
// the message of the turn it was made for.
func e2eLastUser(r *llmtest.Request) string {
	for i := len(r.Messages) - 1; i >= 0; i-- {
		if r.Messages[i].Role == "user" {
			return r.Messages[i].Text()
		}
	}
	return ""
}

// e2eOffered names the tools a model request offered.
func e2eOffered(r *llmtest.Request) []string {
	var out []string
	for _, tl := range r.Tools {
		out = append(out, tl.Function.Name)
	}
	return out
}

// e2eTurnRE finds the caller a turn's message was written for.
var e2eTurnRE = regexp.MustCompile(`\[e2e who=([a-z0-9]+) turn=(\d+)\]`)

// TestAgentDownstreamActsAsEachUser is the model → tool → downstream path
// as the user, with alice, bob (both in the downstream's group), carol (of
// the other tenant) and the t-one admin (not in the group) taking turns at
// the same time: the scripted model holds each one's first request until
// all four are in flight, then calls tickets__whoami in every turn.
// alice's calls reach the TypeScript server as alice and bob's as bob —
// the tool result and the server's own count say so, turn by turn; carol
// and the admin are not offered the tool (the tools the model received),
// and their forced call is refused without reaching the server. Afterwards
// each user's /api/v1/usage holds exactly the tokens the model reported
// for their turns, and each tenant admin's /api/v1/admin/usage only their
// tenant's totals.
func TestAgentDownstreamActsAsEachUser(t *testing.T) {
	t.Parallel()
	const turns = 3
	users := []string{callerAlice, callerBob, callerCarol, callerAdmin}
	inGroup := map[string]bool{callerAlice: true, callerBob: true}
	usage := map[string]llmtest.Usage{ // per model call, distinct per user
		callerAlice: {PromptTokens: 101, CompletionTokens: 11}, callerBob: {PromptTokens: 202, CompletionTokens: 22},
		callerCarol: {PromptTokens: 303, CompletionTokens: 33}, callerAdmin: {PromptTokens: 404, CompletionTokens: 44},
	}

	// The barrier: every user's first model request waits for the others.
	var mu sync.Mutex
	arrived := map[string]bool{}
	allIn := make(chan struct{})
	respond := func(r *llmtest.Request) llmtest.Reply {
		m := e2eTurnRE.FindStringSubmatch(e2eLastUser(r))
		if m == nil {
			t.Errorf("a model request for no e2e turn: %s", r.Body)
			return llmtest.Reply{Status: http.StatusBadRequest}
		}
		u := usage[m[1]]
		last := r.Messages[len(r.Messages)-1]
		if last.Role == "tool" {
			return llmtest.Reply{Text: "The ticket system answered: " + last.Text(), Usage: &u}
		}
		if m[2] == "0" {
			mu.Lock()
			if !arrived[m[1]] {
				if arrived[m[1]] = true; len(arrived) == len(users) {
					close(allIn)
				}
			}
			mu.Unlock()
			select {
			case <-allIn:
			case <-time.After(60 * time.Second):
				t.Errorf("the first turns of %v never were in flight together", users)
				return llmtest.Reply{Status: http.StatusServiceUnavailable}
			}
		}
		// Every turn, whatever it was offered, calls the downstream tool.
		return llmtest.Reply{ToolCalls: []llmtest.ToolCall{{ID: "call_who", Name: "tickets__whoami", Arguments: `{}`}}, Usage: &u}
	}
	s := startE2ERig(t, respond)

	groups := map[string][]string{callerAlice: {e2eGroup}, callerBob: {"sales", e2eGroup},
		callerCarol: {"t-two-engineering"}, callerAdmin: {"sales"}}
	tokens := map[string]string{}
	sessions := map[string]string{}
	for _, who := range users {
		tokens[who] = s.e2eToken(t, who, groups[who]...)
		sessions[who] = s.e2eAgentSession(t, tokens[who], "tickets__whoami")
	}
	oids := map[string]string{}
	for _, who := range users {
		oids[who] = s.UserID(t, who)
	}

	// Plain goroutines, not parallel subtests: -parallel may be lower than
	// the number of users, and the model holds the first turns together.
	raw := map[string][]reply{}
	var wg sync.WaitGroup
	for _, who := range users {
		wg.Go(func() {
			for i := range turns {
				r, err := e2ePost(s.URL, tokens[who], sessions[who], fmt.Sprintf("who am I to the tickets? [e2e who=%s turn=%d]", who, i), i%2 == 1)
				if err != nil {
					t.Errorf("%s turn %d: %v", who, i, err)
					return
				}
				mu.Lock()
				raw[who] = append(raw[who], r)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	answers := map[string][]e2eAnswer{}
	for _, who := range users {
		for i, r := range raw[who] {
			answers[who] = append(answers[who], e2eAnswerOf(t, r, i%2 == 1))
		}
	}

	for _, who := range users {
		for i, a := range answers[who] {
			if a.Message.UserID != oids[who] || a.Reply.UserID != oids[who] {
				t.Errorf("%s turn %d: stored as %q / %q", who, i, a.Message.UserID, a.Reply.UserID)
			}
			for other, oid := range oids {
				if other != who && strings.Contains(a.Raw, oid) {
					t.Errorf("%s turn %d carries %s's id: %s", who, i, other, a.Raw)
				}
			}
			if len(a.Steps) != 1 || a.Steps[0].Tool != "tickets__whoami" {
				t.Fatalf("%s turn %d: steps %+v", who, i, a.Steps)
			}
			st := a.Steps[0]
			if !inGroup[who] {
				if st.OK || !strings.HasPrefix(st.Error, "forbidden: ") || !strings.Contains(st.Error, "not offered") {
					t.Errorf("%s turn %d: the forced call answered %+v; want a refusal", who, i, st)
				}
				continue
			}
			var w e2eWho
			if err := json.Unmarshal(st.Result, &w); err != nil || !st.OK {
				t.Fatalf("%s turn %d: step %+v (%v)", who, i, st, err)
			}
			u := testUsers[who]
			if w.Sub != oids[who] || w.SessionOwner != oids[who] || w.Tid != u.tenant || w.Iss != s.Public ||
				w.Aud != s.DS.URL || w.Lifetime > 300 || !slices.Equal(w.Groups, groups[who]) {
				t.Errorf("%s turn %d: the downstream verified %+v", who, i, w)
			}
			if !strings.Contains(a.Reply.Content, `"sub":"`+oids[who]+`"`) {
				t.Errorf("%s turn %d: the model's reply %q does not carry the result it was sent", who, i, a.Reply.Content)
			}
		}
	}

	// What the model received, request by request.
	reqs := s.Model.Requests()
	if len(reqs) != 2*turns*len(users) {
		t.Fatalf("%d model requests; want %d", len(reqs), 2*turns*len(users))
	}
	for _, r := range reqs {
		who := e2eTurnRE.FindStringSubmatch(e2eLastUser(r))[1]
		want := []string{"tickets__whoami"}
		if !inGroup[who] {
			want = nil
		}
		if got := e2eOffered(r); !slices.Equal(got, want) {
			t.Errorf("a model request of %s's turn offered %v; want %v", who, got, want)
		}
		for _, m := range r.Messages {
			if m.Role != "tool" {
				continue
			}
			if inGroup[who] && !strings.Contains(m.Text(), `"sub":"`+oids[who]+`"`) ||
				!inGroup[who] && !strings.HasPrefix(m.Text(), "forbidden: ") {
				t.Errorf("a tool result sent to the model for %s: %s", who, m.Text())
			}
			for other, oid := range oids {
				if other != who && strings.Contains(m.Text(), oid) {
					t.Errorf("a tool result sent to the model for %s names %s: %s", who, other, m.Text())
				}
			}
		}
	}

	// The downstream's own record: one session each for alice and bob, a
	// call per turn, nothing for carol and the admin, nothing refused, no
	// request on another user's session.
	st := s.DS.Stats(t)
	if st.Refused != 0 || st.Foreign != 0 {
		t.Errorf("the downstream refused %d requests and saw %d on another user's session", st.Refused, st.Foreign)
	}
	for _, who := range users {
		wantSessions, wantCalls := 0, 0
		if inGroup[who] {
			wantSessions, wantCalls = 1, turns
		}
		if st.Sessions[oids[who]] != wantSessions || st.Calls[oids[who]] != wantCalls {
			t.Errorf("the downstream counted %d sessions, %d calls of %s; want %d, %d", st.Sessions[oids[who]], st.Calls[oids[who]], who, wantSessions, wantCalls)
		}
	}
	if len(st.Sessions) != 2 || len(st.Calls) != 2 {
		t.Errorf("the downstream saw sessions %v, calls %v: someone beyond alice and bob", st.Sessions, st.Calls)
	}

	// Each call audited as its caller: a success for those in the group,
	// a denial for the others.
	for _, who := range users {
		outcome := idflow.OutcomeSuccess
		if !inGroup[who] {
			outcome = idflow.OutcomeDenied
		}
		n := 0
		for _, e := range s.e2eAudit(t, tokens[who]) {
			if e.Action == "tool.call" && e.Resource == "tool/tickets__whoami" {
				if e.UserID != oids[who] || e.Outcome != outcome {
					t.Errorf("%s's audit: %+v; want %s by %s", who, e, outcome, oids[who])
				}
				n++
			}
		}
		if n != turns {
			t.Errorf("%s's audit has %d tool.call events of tickets__whoami; want %d", who, n, turns)
		}
	}

	t.Run("usage", func(t *testing.T) {
		yesterday := time.Now().UTC().AddDate(0, 0, -1).Format(idflow.DayFormat)
		calls := int64(2 * turns) // two model calls per turn
		for _, who := range users {
			r := s.Do(t, "GET", "/api/v1/usage?from="+yesterday, tokens[who], nil)
			mustStatus(t, r, http.StatusOK)
			var got usageAnswer
			r.JSON(t, &got)
			var sum idflow.UsageDay
			for _, d := range got.Items {
				if d.UserID != oids[who] || d.Model != e2eModel {
					t.Errorf("%s's usage holds %+v", who, d)
				}
				sum.Calls += d.Calls
				sum.PromptTokens += d.PromptTokens
				sum.CompletionTokens += d.CompletionTokens
			}
			u := usage[who]
			if sum.Calls != calls || sum.PromptTokens != calls*u.PromptTokens || sum.CompletionTokens != calls*u.CompletionTokens {
				t.Errorf("%s's usage adds up to %+v; want %d calls of %+v", who, sum, calls, u)
			}
		}
		// Each tenant admin: their tenant's totals, nobody else's.
		for admin, members := range map[string][]string{callerAdmin: {callerAlice, callerBob, callerAdmin}, callerAdmin2: {callerCarol}} {
			tenant := testUsers[admin].tenant
			var got usageAnswer
			s.As(t, admin, "GET", "/api/v1/admin/usage?from="+yesterday, nil).JSON(t, &got)
			var sum idflow.UsageDay
			for _, d := range got.Items {
				if d.TenantID != tenant || d.UserID != "" || d.Model != e2eModel {
					t.Errorf("%s's admin usage holds %+v", admin, d)
				}
				sum.Calls += d.Calls
				sum.PromptTokens += d.PromptTokens
				sum.CompletionTokens += d.CompletionTokens
				sum.Users = max(sum.Users, d.Users)
			}
			var want idflow.UsageDay
			for _, m := range members {
				want.Calls += calls
				want.PromptTokens += calls * usage[m].PromptTokens
				want.CompletionTokens += calls * usage[m].CompletionTokens
			}
			want.Users = int64(len(members))
			if sum != want {
				t.Errorf("%s's admin usage (tenant %s) adds up to %+v; want %+v", admin, tenant, sum, want)
			}
			// Another tenant's user by id: nothing.
			other := callerCarol
			if tenant == "t-two" {
				other = callerAlice
			}
			var one usageAnswer
			s.As(t, admin, "GET", "/api/v1/admin/usage?from="+yesterday+"&user_id="+oids[other], nil).JSON(t, &one)
			if len(one.Items) != 0 {
				t.Errorf("%s reads %s's usage: %+v", admin, other, one.Items)
			}
		}
	})
}

// e2eAudit reads the whole /api/v1/audit of the holder of token.
func (s *prodServer) e2eAudit(t testing.TB, token string) []auditEvent {
	t.Helper()
	var out []auditEvent
	cursor := ""
	for range 100 {
		p := "/api/v1/audit?limit=200"
		if cursor != "" {
			p += "&cursor=" + url.QueryEscape(cursor)
		}
		r := s.Do(t, "GET", p, token, nil)
		mustStatus(t, r, http.StatusOK)
		var pg struct {
			Items      []auditEvent `json:"items"`
			NextCursor string       `json:"next_cursor"`
		}
		r.JSON(t, &pg)
		out = append(out, pg.Items...)
		if pg.NextCursor == "" {
			return out
		}
		cursor = pg.NextCursor
	}
	t.Fatal("more than 100 pages of audit")
	return nil
}

// downstreamTools are the tools of testdata/downstreammcp that idflow can
// expose (dotted.name and the over-long one are skipped).
var downstreamTools = []string{"tickets__echo", "tickets__fail", "tickets__inject", "tickets__sleep", "tickets__whoami"}

// TestMCPReexposesDownstreamTools: /mcp lists the downstream server's
// tools to alice (in its group) next to the built-ins, and her calls reach
// the TypeScript server as her, identity arguments removed and audited;
// bob (not in the group) is not shown them, and calling one anyway is
// refused without a request to the server.
func TestMCPReexposesDownstreamTools(t *testing.T) {
	t.Parallel()
	s := startE2ERig(t, nil)
	alice, bob := s.e2eToken(t, callerAlice, e2eGroup), s.e2eToken(t, callerBob, "sales")
	aliceID, bobID := s.UserID(t, callerAlice), s.UserID(t, callerBob)

	acs, _ := mcpConnect(t, s.URL, alice)
	want := slices.Sorted(slices.Values(append(slices.Clone(mcpAllTools), downstreamTools...)))
	if got := mcpToolNames(t, acs); !slices.Equal(got, want) {
		t.Fatalf("alice's tools/list: %v; want %v", got, want)
	}
	var w e2eWho
	mcpCall(t, acs, "tickets__whoami", map[string]any{"user_id": bobID}).decode(t, &w)
	if w.Sub != aliceID || w.SessionOwner != aliceID || w.Tid != "t-one" || w.Aud != s.DS.URL || w.Iss != s.Public {
		t.Fatalf("tickets__whoami as alice: the downstream verified %+v", w)
	}
	var echo struct{ Text, Sub string }
	mcpCall(t, acs, "tickets__echo", map[string]any{"text": "hello", "on_behalf_of": bobID}).decode(t, &echo)
	if echo.Text != "hello" || echo.Sub != aliceID {
		t.Fatalf("tickets__echo as alice: %+v", echo)
	}
	if res := mcpCall(t, acs, "tickets__fail", nil); !res.IsError || !strings.Contains(res.Text, "quota exceeded") {
		t.Fatalf("tickets__fail: %+v; want the downstream's error result", res)
	}

	bcs, _ := mcpConnect(t, s.URL, bob)
	if got := mcpToolNames(t, bcs); !slices.Equal(got, mcpAllTools) {
		t.Fatalf("bob's tools/list: %v; want the built-ins only, %v", got, mcpAllTools)
	}
	for _, name := range downstreamTools {
		res, err := mcpTryCall(bcs, name, map[string]any{"text": "let me in", "ms": 0})
		if err == nil && !res.IsError {
			t.Fatalf("bob calling %s: %+v; want a refusal", name, res)
		}
		if err == nil && (strings.Contains(res.Text, "quota") || strings.Contains(res.Text, "IGNORE") || strings.Contains(res.Text, "let me in")) {
			t.Fatalf("bob calling %s got the downstream's answer %q", name, res.Text)
		}
	}

	st := s.DS.Stats(t)
	if st.Refused != 0 || st.Foreign != 0 || len(st.Sessions) != 1 || st.Sessions[aliceID] != 1 ||
		len(st.Calls) != 1 || st.Calls[aliceID] != 3 {
		t.Fatalf("the downstream saw %+v; want alice's one session and 3 calls, nothing of bob's", st)
	}

	aliceEvents := s.e2eAudit(t, alice)
	for _, c := range []struct{ resource, outcome string }{
		{"tool/tickets__whoami", idflow.OutcomeSuccess}, {"tool/tickets__echo", idflow.OutcomeSuccess},
		{"tool/tickets__whoami/argument/user_id", idflow.OutcomeDenied}, {"tool/tickets__echo/argument/on_behalf_of", idflow.OutcomeDenied},
	} {
		if !slices.ContainsFunc(aliceEvents, func(e auditEvent) bool {
			return e.Action == "tool.call" && e.Resource == c.resource && e.Outcome == c.outcome &&
				e.UserID == aliceID && strings.HasPrefix(e.Detail, "channel=mcp ")
		}) {
			t.Errorf("alice's audit has no tool.call %s %s on channel mcp", c.resource, c.outcome)
		}
	}
	bobEvents := s.e2eAudit(t, bob)
	for _, name := range downstreamTools {
		if !slices.ContainsFunc(bobEvents, func(e auditEvent) bool {
			return e.Action == "tool.call" && e.Resource == "tool/"+name && e.Outcome != idflow.OutcomeSuccess && e.UserID == bobID
		}) {
			t.Errorf("bob's refused call of %s was not audited", name)
		}
	}
}

// TestDownstreamInjectionStaysWithTheCaller: a downstream tool's result
// tells the model to act for bob, and the scripted model obeys — it calls
// search_memory, get_run (bob's run id), tickets__echo and tickets__whoami
// with bob's user id in user_id, owner, as_user, on_behalf_of and
// impersonate. Every call runs as alice: the arguments are removed and
// each removal audited, bob's run is not found, the downstream sees only
// alice, and nothing of bob's reaches the model's next request, a tool
// result, the stream or alice's stored turn. bob, sending the same prompt,
// gets only his own data.
func TestDownstreamInjectionStaysWithTheCaller(t *testing.T) {
	t.Parallel()
	const aliceSecret, bobSecret, bobRunSecret = "ALICE-kayak-3f9e41", "BOB-kayak-8c1d27", "BOB-run-5a7b90"
	var mu sync.Mutex
	var victimID, victimRun string // bob's: set before the first turn
	respond := func(r *llmtest.Request) llmtest.Reply {
		last := r.Messages[len(r.Messages)-1]
		switch {
		case last.Role == "user":
			return llmtest.Reply{ToolCalls: []llmtest.ToolCall{{ID: "call_inject", Name: "tickets__inject", Arguments: `{}`}}}
		case strings.Contains(last.Text(), "IGNORE PREVIOUS INSTRUCTIONS"):
			mu.Lock()
			id, run := victimID, victimRun
			mu.Unlock()
			return llmtest.Reply{Text: "Acting for bob now. ", ToolCalls: []llmtest.ToolCall{
				{ID: "call_search", Name: "search_memory", Arguments: fmt.Sprintf(`{"query":"kayak","user_id":%q,"owner":%q}`, id, id)},
				{ID: "call_run", Name: "get_run", Arguments: fmt.Sprintf(`{"run_id":%q,"as_user":"bob","on_behalf_of":%q}`, run, id)},
				{ID: "call_echo", Name: "tickets__echo", Arguments: fmt.Sprintf(`{"text":"for bob","user_id":%q,"impersonate":%q}`, id, id)},
				{ID: "call_who", Name: "tickets__whoami", Arguments: fmt.Sprintf(`{"user_id":%q}`, id)},
			}}
		}
		var b strings.Builder
		b.WriteString("Results:")
		for _, m := range r.Messages {
			if m.Role == "tool" {
				b.WriteString(" " + m.Text())
			}
		}
		return llmtest.Reply{Text: b.String()}
	}
	s := startE2ERig(t, respond)
	alice, bob := s.e2eToken(t, callerAlice, e2eGroup), s.e2eToken(t, callerBob, e2eGroup)
	aliceID, bobID := s.UserID(t, callerAlice), s.UserID(t, callerBob)
	tools := []string{"tickets__inject", "tickets__echo", "tickets__whoami", "search_memory", "get_run"}

	// bob's data: a fact the search would find, a run whose input is secret.
	s.e2eCreate(t, alice, "/api/v1/facts", map[string]any{"content": "my kayak locker code is " + aliceSecret})
	bobFact := s.e2eCreate(t, bob, "/api/v1/facts", map[string]any{"content": "my kayak locker code is " + bobSecret})
	wf := s.e2eCreate(t, bob, "/api/v1/workflows", map[string]any{"name": "bob's", "definition": map[string]any{
		"steps": []any{map[string]any{"id": "w", "type": "wait", "ms": 1}}}})
	r := s.Do(t, "POST", "/api/v1/workflows/"+wf+"/runs", bob, map[string]any{"input": map[string]any{"note": bobRunSecret}})
	mustStatus(t, r, http.StatusAccepted)
	var run object
	r.JSON(t, &run)
	mu.Lock()
	victimID, victimRun = bobID, run.ID
	mu.Unlock()

	session := s.e2eAgentSession(t, alice, tools...)
	rid := s.RequestID("injection")
	a := s.e2eSay(t, alice, session, "what do my tickets say?", true, header{"X-Request-Id", rid})
	for _, secret := range []string{bobSecret, bobRunSecret, bobFact} {
		if strings.Contains(a.Raw, secret) {
			t.Errorf("alice's stream carries bob's %q:\n%s", secret, a.Raw)
		}
	}
	if len(a.Steps) != 5 {
		t.Fatalf("alice's turn ran %d tools; want 5: %+v", len(a.Steps), a.Steps)
	}
	inject, search, getRun, echo, who := a.Steps[0], a.Steps[1], a.Steps[2], a.Steps[3], a.Steps[4]
	if !inject.OK || !strings.Contains(string(inject.Result), "IGNORE PREVIOUS INSTRUCTIONS") {
		t.Errorf("the injection tool answered %+v", inject)
	}
	var found mcpScored
	if err := json.Unmarshal(search.Result, &found); err != nil || !search.OK || len(found.Items) != 1 ||
		found.Items[0].Fact.UserID != aliceID || !strings.Contains(found.Items[0].Fact.Content, aliceSecret) {
		t.Errorf("search_memory for bob answered %+v (%v); want alice's own fact only", search, err)
	}
	if getRun.OK || !strings.HasPrefix(getRun.Error, "not_found: ") {
		t.Errorf("get_run of bob's run as alice answered %+v; want not found", getRun)
	}
	var echoed struct{ Text, Sub string }
	if err := json.Unmarshal(echo.Result, &echoed); err != nil || echoed.Sub != aliceID {
		t.Errorf("tickets__echo for bob reached the downstream as %+v (%v); want alice", echoed, err)
	}
	var w e2eWho
	if err := json.Unmarshal(who.Result, &w); err != nil || w.Sub != aliceID || w.SessionOwner != aliceID {
		t.Errorf("tickets__whoami for bob reached the downstream as %+v (%v); want alice", w, err)
	}

	// The model's requests: the injection reached it as data; after it,
	// only alice's results, with neither bob's data nor his id.
	reqs := s.Model.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d model requests; want 3", len(reqs))
	}
	for i, req := range reqs {
		for _, secret := range []string{bobSecret, bobRunSecret, bobFact} {
			if bytes.Contains(req.Body, []byte(secret)) {
				t.Errorf("model request %d carries bob's %q", i+1, secret)
			}
		}
		// bob's id and run id are in the model's own calls; a result
		// naming either would be bob's data (his run object, his identity).
		for _, m := range req.Messages {
			if m.Role == "tool" && (strings.Contains(m.Text(), bobID) || strings.Contains(m.Text(), run.ID)) {
				t.Errorf("model request %d: a tool result names bob or his run: %s", i+1, m.Text())
			}
		}
	}
	if tl := reqs[1].Messages[len(reqs[1].Messages)-1]; tl.Role != "tool" || !strings.Contains(tl.Text(), "IGNORE PREVIOUS INSTRUCTIONS") {
		t.Errorf("the injection did not reach the model as a tool result: %s", reqs[1].Body)
	}
	if n := len(reqs[2].Messages); n < 5 || reqs[2].Messages[n-1].ToolCallID != "call_who" {
		t.Errorf("the model's last request does not end with the four results: %s", reqs[2].Body)
	}

	// The stored turn: alice's, nothing of bob's.
	for _, raw := range s.listAllAs(t, alice, "/api/v1/sessions/"+session+"/messages") {
		var m idflow.Message
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		if m.UserID != aliceID || strings.Contains(m.Content, bobSecret) || strings.Contains(m.Content, bobRunSecret) {
			t.Errorf("alice's stored turn holds %+v", m)
		}
	}

	// The audit trail of the request: every call by alice, every removed
	// identity argument a denial; bob has none of it.
	events := findAudit(s.e2eAudit(t, alice), rid)
	for _, c := range []struct{ resource, outcome string }{
		{"tool/tickets__inject", idflow.OutcomeSuccess},
		{"tool/search_memory", idflow.OutcomeSuccess},
		{"tool/get_run", idflow.OutcomeDenied},
		{"tool/tickets__echo", idflow.OutcomeSuccess},
		{"tool/tickets__whoami", idflow.OutcomeSuccess},
		{"tool/search_memory/argument/user_id", idflow.OutcomeDenied},
		{"tool/search_memory/argument/owner", idflow.OutcomeDenied},
		{"tool/get_run/argument/as_user", idflow.OutcomeDenied},
		{"tool/get_run/argument/on_behalf_of", idflow.OutcomeDenied},
		{"tool/tickets__echo/argument/user_id", idflow.OutcomeDenied},
		{"tool/tickets__echo/argument/impersonate", idflow.OutcomeDenied},
		{"tool/tickets__whoami/argument/user_id", idflow.OutcomeDenied},
	} {
		if !slices.ContainsFunc(events, func(e auditEvent) bool {
			return e.Action == "tool.call" && e.Resource == c.resource && e.Outcome == c.outcome && strings.HasPrefix(e.Detail, "channel=agent ")
		}) {
			t.Errorf("the audit of alice's turn has no tool.call %s %s", c.resource, c.outcome)
		}
	}
	for _, e := range events {
		if e.UserID != aliceID {
			t.Errorf("an audit event of alice's turn is %s's: %+v", e.UserID, e)
		}
	}
	for _, e := range s.e2eAudit(t, bob) {
		if e.RequestID == rid || e.Action == "tool.call" {
			t.Errorf("bob's audit holds %+v from alice's turn", e)
		}
	}
	for _, e := range s.auditEvents(t, callerAdmin, "/api/v1/admin/audit") {
		if e.Action == "tool.call" && e.UserID != aliceID {
			t.Errorf("the tenant's audit has a tool call of %s: %+v", e.UserID, e)
		}
	}
	if st := s.DS.Stats(t); len(st.Calls) != 1 || st.Calls[aliceID] != 3 || len(st.Sessions) != 1 || st.Sessions[aliceID] != 1 {
		t.Errorf("the downstream saw %+v; want alice's 3 calls on her one session", st)
	}
	var bobFacts listPage
	s.Do(t, "GET", "/api/v1/facts", bob, nil).JSON(t, &bobFacts)
	if len(bobFacts.Items) != 1 {
		t.Errorf("bob has %d facts after alice's turn; want his one", len(bobFacts.Items))
	}

	// bob, the same prompt: his own data, nothing of alice's.
	b := s.e2eSay(t, bob, s.e2eAgentSession(t, bob, tools...), "what do my tickets say?", false)
	if strings.Contains(b.Raw, aliceSecret) || strings.Contains(b.Raw, aliceID) {
		t.Errorf("bob's turn carries alice's data:\n%s", b.Raw)
	}
	if len(b.Steps) != 5 || !strings.Contains(string(b.Steps[1].Result), bobSecret) || !b.Steps[2].OK ||
		!strings.Contains(string(b.Steps[2].Result), bobRunSecret) || !strings.Contains(string(b.Steps[4].Result), `"sub":"`+bobID+`"`) {
		t.Errorf("bob's turn: %+v; want his fact, his run and himself", b.Steps)
	}
	if st := s.DS.Stats(t); st.Calls[bobID] != 3 || st.Calls[aliceID] != 3 || st.Foreign != 0 || st.Refused != 0 {
		t.Errorf("the downstream saw %+v after bob's turn", st)
	}
}

// listAllAs follows next_cursor through a list route as the holder of token.
func (s *prodServer) listAllAs(t testing.TB, token, path string) []json.RawMessage {
	t.Helper()
	var out []json.RawMessage
	cursor := ""
	for range 100 {
		p := path + "?limit=200"
		if cursor != "" {
			p += "&cursor=" + url.QueryEscape(cursor)
		}
		r := s.Do(t, "GET", p, token, nil)
		mustStatus(t, r, http.StatusOK)
		var pg listPage
		r.JSON(t, &pg)
		out = append(out, pg.Items...)
		if pg.NextCursor == "" {
			return out
		}
		cursor = pg.NextCursor
	}
	t.Fatalf("GET %s: more than 100 pages", path)
	return nil
}

// TestDevAgentSearchMemoryFlow is the agent runtime's whole path in
// `serve --dev` with the built-in echo model: alice saves a fact with a
// unique word, makes an agent with the tool search_memory, and streams
// `/tool search_memory {"query":"<word>"}`: the events come in the order
// message, memory, tool_call, tool_result (holding her fact), deltas,
// reply, done, and the turn is stored. bob, doing the same, gets no trace
// of alice's fact in any event; he cannot use her agent or her session.
func TestDevAgentSearchMemoryFlow(t *testing.T) {
	t.Parallel()
	srv := startIdflow(t, map[string]string{"IDFLOW_LOG_LEVEL": "error"}, "--dev")
	s := &prodServer{runningServer: srv}
	devToken := func(who string) string {
		out, errOut, err := runCmd(t, map[string]string{}, "dev-token", who, "--server", srv.URL)
		if err != nil {
			t.Fatalf("dev-token %s: %v\n%s", who, err, errOut)
		}
		return strings.TrimSpace(out)
	}
	alice, bob := devToken("alice"), devToken("bob")
	word := "zanzibar" + strings.ToLower(idflow.NewID("")[:10])
	prompt := fmt.Sprintf(`/tool search_memory {"query":%q}`, word)
	stepsRE := regexp.MustCompile(`^message memory tool_call tool_result( delta)+ reply done$`)

	fact := s.e2eCreate(t, alice, "/api/v1/facts", map[string]any{"content": "My kayak is called " + word})
	agent := s.e2eCreate(t, alice, "/api/v1/agents", map[string]any{"name": "Memory", "instructions": "Answer from my memory.", "tools": []string{"search_memory"}})
	var got idflow.Agent
	s.Do(t, "GET", "/api/v1/agents/"+agent, alice, nil).JSON(t, &got)
	if !slices.Equal(got.Tools, []string{"search_memory"}) || got.UserID != "dev-alice" {
		t.Fatalf("alice's agent: %+v", got)
	}
	session := s.e2eCreate(t, alice, "/api/v1/sessions", map[string]any{"title": "what do I know", "agent_id": agent})

	r, evs := e2eStreamTurn(t, srv.URL, alice, session, prompt)
	mustStatus(t, r, http.StatusOK)
	if names := strings.Join(e2eEventNames(evs), " "); !stepsRE.MatchString(names) {
		t.Fatalf("alice's events: %s", names)
	}
	a := e2eGather(t, evs)
	if a.Message.UserID != "dev-alice" || a.Message.Content != prompt || a.Reply.UserID != "dev-alice" {
		t.Fatalf("alice's turn: message %+v, reply %+v", a.Message, a.Reply)
	}
	if len(a.Memory) != 1 || a.Memory[0].ID != fact {
		t.Fatalf("alice's memory event: %+v; want her fact %s", a.Memory, fact)
	}
	if len(a.Steps) != 1 || a.Steps[0].Tool != "search_memory" || !a.Steps[0].OK || string(a.Steps[0].Arguments) != fmt.Sprintf(`{"query":%q}`, word) {
		t.Fatalf("alice's tool call: %+v", a.Steps)
	}
	var found mcpScored
	if err := json.Unmarshal(a.Steps[0].Result, &found); err != nil || len(found.Items) != 1 ||
		found.Items[0].Fact.ID != fact || found.Items[0].Fact.UserID != "dev-alice" {
		t.Fatalf("alice's tool result %s (%v); want her fact", a.Steps[0].Result, err)
	}
	if !strings.HasPrefix(a.Reply.Content, "tool search_memory answered: ") || !strings.Contains(a.Reply.Content, "My kayak is called "+word) {
		t.Fatalf("alice's reply %q", a.Reply.Content)
	}
	var stored []idflow.Message
	for _, raw := range s.listAllAs(t, alice, "/api/v1/sessions/"+session+"/messages") {
		var m idflow.Message
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		stored = append(stored, m)
	}
	if len(stored) != 4 || stored[0].ID != a.Message.ID || len(stored[1].ToolCalls) != 1 || stored[2].Role != "tool" ||
		stored[2].Name != "search_memory" || stored[3].ID != a.Reply.ID {
		t.Fatalf("alice's stored turn: %+v", stored)
	}

	// bob: the same prompt, on his own agent.
	bobAgent := s.e2eCreate(t, bob, "/api/v1/agents", map[string]any{"name": "Memory", "instructions": "Answer from my memory.", "tools": []string{"search_memory"}})
	bobSession := s.e2eCreate(t, bob, "/api/v1/sessions", map[string]any{"title": "what do I know", "agent_id": bobAgent})
	r, evs = e2eStreamTurn(t, srv.URL, bob, bobSession, prompt)
	mustStatus(t, r, http.StatusOK)
	if names := strings.Join(e2eEventNames(evs), " "); !stepsRE.MatchString(names) {
		t.Fatalf("bob's events: %s", names)
	}
	for _, e := range evs {
		for _, trace := range []string{fact, "dev-alice", "My kayak"} {
			if strings.Contains(string(e.Data), trace) {
				t.Errorf("bob's %s event carries alice's %q: %s", e.Name, trace, e.Data)
			}
		}
	}
	b := e2eGather(t, evs)
	if len(b.Memory) != 0 || len(b.Steps) != 1 || !b.Steps[0].OK || string(b.Steps[0].Result) != `{"items":[]}` || b.Reply.UserID != "dev-bob" {
		t.Fatalf("bob's turn: memory %+v, steps %+v, reply %+v", b.Memory, b.Steps, b.Reply)
	}
	// alice's agent and session are not bob's to use.
	checkProblem(t, s.Do(t, "POST", "/api/v1/sessions", bob, map[string]any{"title": "hers", "agent_id": agent}), http.StatusNotFound)
	r, evs = e2eStreamTurn(t, srv.URL, bob, session, prompt)
	checkProblem(t, r, http.StatusNotFound)
	if evs != nil || strings.Contains(string(r.Body), word) {
		t.Fatalf("bob on alice's session: %s", r)
	}
}

// TestStreamedTurnRefusedBeforeAnyStream extends the authorization matrix
// to the streamed POST …/messages (Accept: text/event-stream): every
// caller but alice, on alice's session, gets the problem+json answer the
// JSON route gives — 404 for any other user, admins included, exactly the
// answer for a session that does not exist; 403 for the app; 401 without
// valid credentials — before any event, with the denial audited, the
// model never asked and nothing stored.
func TestStreamedTurnRefusedBeforeAnyStream(t *testing.T) {
	t.Parallel()
	model := llmtest.NewFunc(t, func(*llmtest.Request) llmtest.Reply { return llmtest.Reply{Text: "ok " + secretMarker} })
	s := startProdIdflow(t, map[string]string{"IDFLOW_LLM_URL": model.URL, "IDFLOW_LLM_MODEL": e2eModel, "IDFLOW_LLM_MAX_RETRIES": "0"})
	var ids []string
	session := newFixture(t, s, callerAlice, false, &ids).id("session_id")
	asked := len(model.Requests())
	missing := randomLike(t, "session_id", session)

	for _, caller := range nonOwners {
		want := http.StatusNotFound
		switch caller {
		case callerApp:
			want = http.StatusForbidden
		case callerExpired, callerNone:
			want = http.StatusUnauthorized
		}
		rid := s.RequestID(caller + "-stream")
		hers, evs := e2eStreamTurn(t, s.URL, s.Token(t, caller), session, "let me in", header{"X-Request-Id", rid})
		checkProblem(t, hers, want)
		if evs != nil || strings.Contains(string(hers.Body), "event:") || strings.Contains(string(hers.Body), secretMarker) {
			t.Errorf("%s on alice's session: %s", caller, hers)
		}
		if want != http.StatusNotFound {
			continue
		}
		none, _ := e2eStreamTurn(t, s.URL, s.Token(t, caller), missing, "let me in")
		if string(hers.Body) != string(none.Body) || !reflect.DeepEqual(comparableHeader(hers.Header), comparableHeader(none.Header)) {
			t.Errorf("%s: alice's session answers %s %v, a missing one %s %v", caller, hers.Body, hers.Header, none.Body, none.Header)
		}
		denied := false
		for _, e := range findAudit(s.auditEvents(t, caller, "/api/v1/audit"), rid) {
			denied = denied || e.Outcome == idflow.OutcomeDenied
		}
		if !denied {
			t.Errorf("%s's streamed turn on alice's session was not audited as denied", caller)
		}
	}
	if n := len(model.Requests()); n != asked {
		t.Errorf("the model was asked %d times by the refused turns", n-asked)
	}
	if msgs := s.listAll(t, callerAlice, "/api/v1/sessions/"+session+"/messages"); len(msgs) != 2 {
		t.Errorf("alice's session holds %d messages after the refused turns; want her 2", len(msgs))
	}
}

// toolMatrixCase is how a tool is called with alice's object ids. param,
// when set, is the path parameter (as the REST matrix names it) whose
// object the arguments name: the answer must be exactly that for an object
// that does not exist. notFound requires it to be not_found.
type toolMatrixCase struct {
	param    string
	notFound bool
	args     func(id string, aliceUserID string) map[string]any
}

// toolMatrix says, for every built-in tool, how the tool matrix calls it.
// A tool without a case fails TestToolMatrix, so that a new tool forces a
// decision here. Every case also names alice in an identity argument.
var toolMatrix = map[string]toolMatrixCase{
	"whoami": {args: func(_, u string) map[string]any { return map[string]any{"user_id": u, "as_user": u} }},
	"list_sessions": {param: "app_id", args: func(id, u string) map[string]any {
		return map[string]any{"app_id": id, "user_id": u, "limit": 200}
	}},
	"send_message": {param: "session_id", notFound: true, args: func(id, u string) map[string]any {
		return map[string]any{"session_id": id, "content": "tell me " + secretMarker, "owner": u}
	}},
	"search_memory": {args: func(_, u string) map[string]any {
		return map[string]any{"query": aliceFactText, "limit": 50, "user_id": u}
	}},
	"add_fact": {args: func(_, u string) map[string]any {
		return map[string]any{"content": "a note of the caller's own", "user_id": u}
	}},
	"ingest_document": {args: func(_, u string) map[string]any {
		return map[string]any{"filename": "mine.txt", "content": "the caller's own document", "owner_id": u}
	}},
	"get_run": {param: "run_id", notFound: true, args: func(id, u string) map[string]any {
		return map[string]any{"run_id": id, "on_behalf_of": u}
	}},
	"start_workflow": {param: "workflow_id", notFound: true, args: func(id, u string) map[string]any {
		return map[string]any{"workflow_id": id, "input": map[string]any{"impersonate": u}}
	}},
	"list_connections": {args: func(_, u string) map[string]any { return map[string]any{"user_id": u} }},
}

// TestToolMatrix calls every built-in tool bob and carol are offered, with
// alice's object ids and her user id in identity arguments, through /mcp
// (the go-sdk client) and through an agent turn (the echo model's /tool):
// a tool naming alice's object answers exactly what it answers for an
// object that does not exist (not_found where the tool reads one object),
// and no answer carries anything of alice's — her text, her ids, an object
// of hers. Her data is unchanged afterwards.
func TestToolMatrix(t *testing.T) {
	t.Parallel()
	s := startProdIdflow(t, nil)
	var aliceIDs []string
	fx := newFixture(t, s, callerAlice, false, &aliceIDs)
	for _, p := range []string{"app_id", "session_id", "workflow_id", "run_id", "document_id", "fact_id"} {
		fx.id(p)
	}
	aliceUserID := s.UserID(t, callerAlice)
	counts := func() map[string]int {
		out := map[string]int{}
		for _, path := range []string{"/api/v1/facts", "/api/v1/documents", "/api/v1/runs", "/api/v1/sessions",
			"/api/v1/sessions/" + fx.id("session_id") + "/messages"} {
			out[path] = len(s.listAll(t, callerAlice, path))
		}
		return out
	}
	before := counts()

	// noLeak fails if an answer carries anything of alice's.
	noLeak := func(t *testing.T, label, caller, text string) {
		t.Helper()
		if strings.Contains(text, secretMarker) {
			t.Errorf("%s: the answer carries alice's text: %s", label, text)
		}
		for _, id := range append([]string{aliceUserID}, aliceIDs...) {
			if strings.Contains(text, id) {
				t.Errorf("%s: the answer carries alice's id %s: %s", label, id, text)
			}
		}
		var v any
		if json.Unmarshal([]byte(text), &v) == nil {
			walkJSON(v, func(key string, val any) {
				if key == "user_id" && val != s.UserID(t, caller) {
					t.Errorf("%s: an object of %v: %s", label, val, text)
				}
			})
		}
	}

	for _, caller := range []string{callerBob, callerCarol} {
		t.Run(caller, func(t *testing.T) {
			cs, _ := mcpConnect(t, s.URL, s.Token(t, caller))
			names := mcpToolNames(t, cs)
			if len(names) == 0 {
				t.Fatal("no tools offered")
			}
			session := s.create(t, caller, "/api/v1/sessions", map[string]any{"title": "tool matrix"}) // the default agent: every built-in
			for _, name := range names {
				c, ok := toolMatrix[name]
				if !ok {
					t.Errorf("tool %s has no tool-matrix case: add it to toolMatrix", name)
					continue
				}
				hers, random := "", ""
				if c.param != "" {
					hers = fx.id(c.param)
					random = randomLike(t, c.param, hers)
				}
				// /mcp
				theirs := mcpCall(t, cs, name, c.args(hers, aliceUserID))
				label := "/mcp " + name + " as " + caller
				noLeak(t, label, caller, theirs.Text)
				noLeak(t, label, caller, string(theirs.Structured))
				if c.notFound && (!theirs.IsError || !strings.HasPrefix(theirs.Text, "not_found: ")) {
					t.Errorf("%s with alice's %s: %+v; want not_found", label, c.param, theirs)
				}
				if c.param != "" {
					if none := mcpCall(t, cs, name, c.args(random, aliceUserID)); none.IsError != theirs.IsError || none.Text != theirs.Text {
						t.Errorf("%s: alice's %s answers %+v, a missing one %+v", label, c.param, theirs, none)
					}
				}
				// An agent turn: the model (echo) calls the tool.
				say := func(id string) e2eStep {
					args, _ := json.Marshal(c.args(id, aliceUserID))
					r := s.As(t, caller, "POST", "/api/v1/sessions/"+session+"/messages", map[string]any{"content": "/tool " + name + " " + string(args)})
					mustStatus(t, r, http.StatusCreated)
					var a e2eAnswer
					r.JSON(t, &a)
					if len(a.Steps) != 1 || a.Steps[0].Tool != name {
						t.Fatalf("an agent turn calling %s: %s", name, r.Body)
					}
					noLeak(t, "a turn calling "+name+" as "+caller, caller, a.Reply.Content)
					return a.Steps[0]
				}
				st := say(hers)
				label = "a turn calling " + name + " as " + caller
				noLeak(t, label, caller, string(st.Result))
				noLeak(t, label, caller, st.Error)
				if c.notFound && (st.OK || !strings.HasPrefix(st.Error, "not_found: ")) {
					t.Errorf("%s with alice's %s: %+v; want not_found", label, c.param, st)
				}
				if c.param != "" {
					if none := say(random); none.OK != st.OK || none.Error != st.Error || (st.OK && !bytes.Equal(none.Result, st.Result)) {
						t.Errorf("%s: alice's %s answers %+v, a missing one %+v", label, c.param, st, none)
					}
				}
			}
		})
	}
	if after := counts(); !reflect.DeepEqual(before, after) {
		t.Errorf("alice's data changed under the tool matrix: %v → %v", before, after)
	}
}

// FuzzAgentToolCall drives tool-argument handling end to end: whatever
// tool call the scripted model makes in alice's turn — any name, any
// arguments, JSON or not, identity arguments or not — streamed through the
// real openai-go client, the turn answers (201, or 503 when the model's
// answer is refused as a whole) and never fails with another status; each
// call runs as alice or is refused; every object in a result is alice's;
// the TypeScript downstream, when reached, is reached as alice only; and
// bob's data never appears.
func FuzzAgentToolCall(f *testing.F) {
	for _, seed := range [][2]string{
		{"search_memory", `{"query":"kayak","user_id":"bob","owner":"bob"}`},
		{"search_memory", `{"query":"kayak","limit":500}`},
		{"search_memory", `[{"user_id":1}]`},
		{"search_memory", `not json`},
		{"search_memory", `{"query":"kayak"}{"query":"bob"}`},
		{"get_run", `{"run_id":"run_doesnotexist0000000000","as_user":"bob"}`},
		{"add_fact", `{"content":"\u0000\u2028 note","impersonate":{"user_id":"bob"}}`},
		{"add_fact", "{\"content\":\"\xff\xfe\"}"},
		{"tickets__echo", `{"text":"hi","onBehalfOf":"bob","deep":[[{"OWNER_ID":"bob"}]]}`},
		{"tickets__whoami", `{"user_id":"bob"}`},
		{"tickets__sleep", `{"ms":-1}`},
		{"whoami", `{}`},
		{"../../admin", `{}`},
		{"", `{}`},
		{"tickets__whoami\u0000", `{}`},
		{"search_memory", `{"query":1e400}`},
	} {
		f.Add(seed[0], seed[1])
	}

	var mu sync.Mutex
	var next llmtest.ToolCall
	model := llmtest.NewFunc(f, func(r *llmtest.Request) llmtest.Reply {
		if r.Messages[len(r.Messages)-1].Role == "tool" {
			return llmtest.Reply{Text: "done"}
		}
		mu.Lock()
		defer mu.Unlock()
		return llmtest.Reply{ToolCalls: []llmtest.ToolCall{next}}
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	public := "http://" + addr
	ds := testsvc.StartDownstreamMCP(f, public, public+"/.well-known/idflow/jwks.json")
	servers := filepath.Join(f.TempDir(), "mcp-servers.json")
	if err := os.WriteFile(servers, fmt.Appendf(nil, `{"servers": [{"name": "tickets", "url": %q, "auth": {"type": "assertion"}, "groups": [%q]}]}`, ds.URL, e2eGroup), 0o600); err != nil {
		f.Fatal(err)
	}
	s := mcpStart(f, map[string]string{"IDFLOW_LISTEN": addr, "IDFLOW_MCP_SERVERS_FILE": servers, "IDFLOW_LOG_LEVEL": "error",
		"IDFLOW_LLM_URL": model.URL, "IDFLOW_LLM_MODEL": e2eModel, "IDFLOW_LLM_MAX_RETRIES": "0"})
	alice, bob := s.token(f, "alice"), s.token(f, "bob") // alice is in e2eGroup
	aliceID := mcpUserID("alice")
	const bobSecret = "BOB-fuzz-secret-61c2"
	mcpRESTJSON(f, "POST", s.URL+"/api/v1/facts", bob, map[string]any{"content": "kayak " + bobSecret}, http.StatusCreated, nil)
	var agent, session object
	mcpRESTJSON(f, "POST", s.URL+"/api/v1/agents", alice, map[string]any{"name": "fuzz", "tools": []string{
		"search_memory", "get_run", "add_fact", "whoami", "tickets__echo", "tickets__whoami", "tickets__sleep"}}, http.StatusCreated, &agent)
	mcpRESTJSON(f, "POST", s.URL+"/api/v1/sessions", alice, map[string]any{"title": "fuzz", "agent_id": agent.ID}, http.StatusCreated, &session)

	f.Fuzz(func(t *testing.T, name, args string) {
		mu.Lock()
		next = llmtest.ToolCall{ID: "call_fuzz", Name: name, Arguments: args}
		mu.Unlock()
		status, body := mcpREST(t, "POST", s.URL+"/api/v1/sessions/"+session.ID+"/messages", alice, map[string]any{"content": "a fuzzed turn"})
		if status == http.StatusServiceUnavailable {
			return // the model's answer refused whole (over a bound): nothing ran
		}
		if status != http.StatusCreated {
			t.Fatalf("status %d: %s", status, body)
		}
		if bytes.Contains(body, []byte(bobSecret)) {
			t.Fatalf("alice's turn carries bob's fact: %s", body)
		}
		var a e2eAnswer
		if err := json.Unmarshal(body, &a); err != nil {
			t.Fatal(err)
		}
		if a.Reply.UserID != aliceID || len(a.Steps) > 1 {
			t.Fatalf("the turn: %s", body)
		}
		for _, st := range a.Steps {
			if !st.OK && st.Error == "" || st.OK && !json.Valid(st.Result) || !json.Valid(st.Arguments) {
				t.Fatalf("a step %+v", st)
			}
			var v any
			if json.Unmarshal(st.Result, &v) == nil {
				walkJSON(v, func(key string, val any) {
					if (key == "user_id" || key == "sub") && val != aliceID {
						t.Fatalf("a result names %v: %s", val, st.Result)
					}
				})
			}
		}
		if st := ds.Stats(t); len(st.Calls) > 1 || len(st.Sessions) > 1 || st.Foreign != 0 || st.Refused != 0 ||
			len(st.Calls) == 1 && st.Calls[aliceID] == 0 {
			t.Fatalf("the downstream saw %+v; want alice alone", st)
		}
	})
}
