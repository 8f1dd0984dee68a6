package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
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

// End-to-end tests of the agent runtime (issue 11) with real components
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

// e2eStreamTurn sends content to a session with Accept: text/event-stream and
// answers the events. A 200 that is not an event stream fails the test.
func e2eStreamTurn(t testing.TB, base, token, session, content string, headers ...header) (reply, []e2eEvent) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"content": content})
	req, err := http.NewRequest("POST", base+"/api/v1/sessions/"+session+"/messages", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	for _, h := range headers {
		req.Header.Set(h.name, h.value)
	}
	resp, err := harnessClient.Do(req)
	if err != nil {
		t.Fatalf("streamed turn: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("streamed turn: %v", err)
	}
	r := reply{Method: "POST", Path: req.URL.Path, Status: resp.StatusCode, Header: resp.Header, Body: b}
	if r.Status != http.StatusOK {
		return r, nil
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("%s: Content-Type %q", r, ct)
	}
	return r, e2eReadEvents(t, b)
}

// e2eGather rebuilds a turn's answer from its events (which must end with
// reply, done), requiring the order message, memory, then tool_call and
// tool_result pairs and deltas, then reply and done; the deltas after the
// last tool result add up to the reply.
func e2eGather(t testing.TB, evs []e2eEvent) e2eAnswer {
	t.Helper()
	var a e2eAnswer
	names := strings.Join(e2eEventNames(evs), " ")
	if !regexp.MustCompile(`^message memory( delta)*( tool_call tool_result( delta)*)* reply done$`).MatchString(names) {
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
	if stream {
		r, evs := e2eStreamTurn(t, s.URL, token, session, content, headers...)
		mustStatus(t, r, http.StatusOK)
		a := e2eGather(t, evs)
		a.Raw = string(r.Body)
		return a
	}
	r := s.Do(t, "POST", "/api/v1/sessions/"+session+"/messages", token, map[string]any{"content": content}, headers...)
	mustStatus(t, r, http.StatusCreated)
	var a e2eAnswer
	r.JSON(t, &a)
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
			if arrived[m[1]] = true; len(arrived) == len(users) {
				close(allIn)
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

	answers := map[string][]e2eAnswer{}
	var wg sync.WaitGroup
	for _, who := range users {
		wg.Go(func() {
			for i := range turns {
				a := s.e2eSay(t, tokens[who], sessions[who], fmt.Sprintf("who am I to the tickets? [e2e who=%s turn=%d]", who, i), i%2 == 1)
				mu.Lock()
				answers[who] = append(answers[who], a)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
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
