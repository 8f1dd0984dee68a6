package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/idflow/idflow/internal/testsvc"
)

// turnInfo is what the page shows of the last agent turn.
type turnInfo struct {
	State      string `json:"state"`  // done | failed | streaming
	Events     string `json:"events"` // the event types seen, in order, repeats folded
	Deltas     int    `json:"deltas"`
	UserState  string `json:"userState"`
	UserID     string `json:"userId"`
	Memory     string `json:"memory"`     // the memory facts listed
	MemoryOpen bool   `json:"memoryOpen"` // shown expanded
	Tool       string `json:"tool"`       // the tool call's name
	ToolState  string `json:"toolState"`
	ToolOpen   bool   `json:"toolOpen"`
	Arguments  string `json:"arguments"`
	Result     string `json:"result"`
	Reply      string `json:"reply"`
	ReplyState string `json:"replyState"`
	ReplyID    string `json:"replyId"`
	Error      string `json:"error"`
}

const readTurnJS = `(() => {
  const turns = document.querySelectorAll('.turn');
  const t = turns[turns.length - 1];
  const user = t.previousElementSibling;
  const tool = t.querySelector('details.tool');
  const mem = t.querySelector('details.memory');
  const replies = t.querySelectorAll('.msg.assistant');
  const reply = replies[replies.length - 1];
  const txt = (el, sel) => (el && el.querySelector(sel) ? el.querySelector(sel).textContent : '');
  return {
    state: t.dataset.state, events: t.dataset.events, deltas: Number(t.dataset.deltas),
    userState: user.dataset.state || '', userId: user.dataset.id || '',
    memory: mem ? mem.querySelector('ul').textContent : '', memoryOpen: mem ? mem.open : false,
    tool: tool ? tool.dataset.tool : '', toolState: tool ? tool.dataset.state : '', toolOpen: tool ? tool.open : false,
    arguments: txt(tool, '[data-part=arguments]'), result: txt(tool, '[data-part=result]'),
    reply: reply ? reply.textContent : '', replyState: reply ? (reply.dataset.state || '') : '', replyId: reply ? (reply.dataset.id || '') : '',
    error: txt(t, '.error'),
  };
})()`

// sendTurn types a message into the open chat, sends it, and waits until
// the page shows the turn ended (stored, or failed).
func (b *browser) sendTurn(content string) turnInfo {
	b.t.Helper()
	b.run("send "+content,
		chromedp.SendKeys(chromedp.CSS(`#send input[name=content]`), content),
		chromedp.Click(chromedp.CSS(`#send button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`.turn[data-state="done"], .turn[data-state="failed"]`)))
	return value(b, "read the turn", chromedp.Evaluate[turnInfo](readTurnJS))
}

// TestBrowserAgentTurn drives a streamed agent turn with a tool call in
// Chromium: alice remembers a fact, makes an agent whose only tool,
// search_memory, she picks from the catalog's checkboxes, and asks it (the
// dev model's "/tool") to search her memory. The page streams the turn —
// the memory it used, the tool call and its result collapsed, the deltas,
// then the stored reply — and shows the same turn from the history after
// a reload. bob, in his own browser, sends the same prompt: his tool
// result and memory hold his fact and none of alice's.
func TestBrowserAgentTurn(t *testing.T) {
	contexts := newBrowsers(t)
	srv := startIdflow(t, map[string]string{}, "--dev")
	alice := &browser{ctx: contexts(), base: srv.URL, t: t}
	bob := &browser{ctx: contexts(), base: srv.URL, t: t}
	word := "quokka" + randomHex(t, 5)
	aliceFact := "alice keeps the " + word + " key under the blue mat"
	bobFact := "bob parks the " + word + " van on level two"
	prompt := `/tool search_memory {"query":"` + word + `"}`

	alice.signIn("alice")
	alice.remember(aliceFact)

	// The agent form offers the catalog alice may use as checkboxes, the
	// built-ins in their own group.
	alice.run("open agents", chromedp.Navigate(srv.URL+"/#/agents"), chromedp.WaitVisible(chromedp.ID("new-agent")))
	offered := value(alice, "read the tool checkboxes", chromedp.Evaluate[[]string](
		`[...document.querySelectorAll('#new-agent fieldset[data-server=""] input[name=tools]')].map(i => i.value)`))
	for _, name := range []string{"search_memory", "whoami", "add_fact"} {
		if !strings.Contains(strings.Join(offered, " "), name) {
			t.Fatalf("the agent form offers %v; no %s among the built-ins", offered, name)
		}
	}
	alice.run("create an agent with search_memory",
		chromedp.SendKeys(chromedp.CSS(`#new-agent input[name=name]`), "alice researcher"),
		chromedp.Click(chromedp.CSS(`#new-agent input[name=tools][value=search_memory]`)),
		chromedp.Click(chromedp.CSS(`#new-agent button[type=submit]`)),
		chromedp.WaitVisible(chromedp.Search(`//li[.//strong[text()="alice researcher"]]//button[@data-action="chat"]`)))
	tools := value(alice, "read the agent's tools", chromedp.Evaluate[[]string](
		`[...document.querySelectorAll('li[data-agent-id] code.tool-name')].map(c => c.textContent)`))
	if strings.Join(tools, ",") != "search_memory" {
		t.Fatalf("the agent was stored with tools %v; want only search_memory", tools)
	}
	alice.screenshot("agents")
	alice.run("open a chat with the agent",
		chromedp.Click(chromedp.Search(`//li[.//strong[text()="alice researcher"]]//button[@data-action="chat"]`)),
		chromedp.WaitVisible(chromedp.ID("send")))
	if got := alice.text("#chat-agent"); !strings.Contains(got, "alice researcher") || !strings.Contains(got, "search_memory") {
		t.Fatalf("the chat names its agent as %q", got)
	}
	aliceChat := alice.hashOf("#/chats/")

	turn := alice.sendTurn(prompt)
	if turn.State != "done" {
		t.Fatalf("alice's turn ended %q: %s", turn.State, turn.Error)
	}
	// Every event came over the stream, in the documented order, the
	// reply in several deltas before the stored reply replaced it.
	if turn.Events != "message memory tool_call tool_result delta reply done" {
		t.Fatalf("the page saw the events %q", turn.Events)
	}
	if turn.Deltas < 2 {
		t.Fatalf("the reply came in %d delta(s); want it streamed in several", turn.Deltas)
	}
	if turn.UserState != "stored" || !strings.HasPrefix(turn.UserID, "msg_") || turn.ReplyState != "stored" || !strings.HasPrefix(turn.ReplyID, "msg_") {
		t.Fatalf("the turn's messages are not marked stored: %+v", turn)
	}
	if !strings.Contains(turn.Memory, aliceFact) || !strings.Contains(turn.Memory, "fct_") || turn.MemoryOpen {
		t.Fatalf("the memory used shows %q (open %v); want alice's fact and its id, collapsed", turn.Memory, turn.MemoryOpen)
	}
	if turn.Tool != "search_memory" || turn.ToolState != "ok" || turn.ToolOpen {
		t.Fatalf("the tool call shows as %q, %q, open %v", turn.Tool, turn.ToolState, turn.ToolOpen)
	}
	if !strings.Contains(turn.Arguments, word) || !strings.Contains(turn.Result, aliceFact) {
		t.Fatalf("the tool call's arguments %q, result %q; want the query and alice's fact", turn.Arguments, turn.Result)
	}
	if !strings.HasPrefix(turn.Reply, "tool search_memory answered:") || !strings.Contains(turn.Reply, word) {
		t.Fatalf("the reply is %q", turn.Reply)
	}
	alice.run("expand the tool call and the memory",
		chromedp.Click(chromedp.CSS(`.turn details.memory summary`)),
		chromedp.Click(chromedp.CSS(`.turn details.tool summary`)),
		chromedp.WaitVisible(chromedp.CSS(`.turn details.tool [data-part=result]`)))
	alice.screenshot("agent-turn")

	// The stored turn, from the history: the call, its result, the reply.
	alice.run("reload the chat", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`#messages details.tool[data-state="ok"]`)))
	history := value(alice, "read the history", chromedp.Evaluate[[]string](
		`[...document.querySelectorAll('#messages > *')].map(e => e.className + ' | ' + e.textContent)`))
	if len(history) != 3 || !strings.HasPrefix(history[0], "msg user | "+prompt) ||
		!strings.HasPrefix(history[1], "tool | Tool search_memory ok") || !strings.Contains(history[1], aliceFact) ||
		!strings.HasPrefix(history[2], "msg assistant | "+turn.Reply) {
		t.Fatalf("the history shows %q", history)
	}

	// bob: his own fact, the same prompt on his default agent (its tools
	// are the built-ins he may use).
	bob.signIn("bob")
	bob.remember(bobFact)
	bob.run("bob starts a chat",
		chromedp.Navigate(srv.URL+"/#/chats"),
		chromedp.WaitVisible(chromedp.ID("new-chat")),
		chromedp.SendKeys(chromedp.CSS(`#new-chat input[name=title]`), "bob asks"),
		chromedp.Click(chromedp.CSS(`#new-chat button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("send")))
	bt := bob.sendTurn(prompt)
	if bt.State != "done" || bt.Tool != "search_memory" || bt.ToolState != "ok" {
		t.Fatalf("bob's turn: %+v", bt)
	}
	if !strings.Contains(bt.Result, bobFact) || !strings.Contains(bt.Memory, bobFact) {
		t.Fatalf("bob's result %q and memory %q lack his own fact", bt.Result, bt.Memory)
	}
	page := value(bob, "read bob's page", chromedp.Text(chromedp.CSS("main")))
	for _, leak := range []string{aliceFact, "blue mat", "alice researcher"} {
		if strings.Contains(bt.Result+bt.Memory+bt.Reply+page, leak) {
			t.Fatalf("bob's turn shows alice's %q: %+v", leak, bt)
		}
	}
	// alice's chat, opened by bob, is not found.
	bob.run("bob opens alice's chat", chromedp.Navigate(srv.URL+"/#/chats/"+aliceChat), chromedp.WaitVisible(chromedp.ID("not-found")))
}

// remember adds a fact through the memory page.
func (b *browser) remember(fact string) {
	b.t.Helper()
	b.run("remember "+fact,
		chromedp.Navigate(b.base+"/#/memory"),
		chromedp.WaitVisible(chromedp.ID("add-fact")),
		chromedp.SendKeys(chromedp.CSS(`#add-fact input[name=content]`), fact),
		chromedp.Click(chromedp.CSS(`#add-fact button[type=submit]`)),
		chromedp.WaitVisible(chromedp.Search(fmt.Sprintf(`//li/span[text()=%q]`, fact))))
}

// TestBrowserFailedTurnSavesNothing: a turn that fails once its stream has
// begun (here every turn outlives IDFLOW_AGENT_TURN_TIMEOUT) shows the
// problem's detail in the page, marks the message as not sent and gives
// it back to the input; a reload shows that nothing of it was stored.
func TestBrowserFailedTurnSavesNothing(t *testing.T) {
	contexts := newBrowsers(t)
	srv := startIdflow(t, map[string]string{"IDFLOW_AGENT_TURN_TIMEOUT": "1ns"}, "--dev")
	alice := &browser{ctx: contexts(), base: srv.URL, t: t}
	alice.signIn("alice")
	alice.run("start a chat",
		chromedp.Navigate(srv.URL+"/#/chats"),
		chromedp.WaitVisible(chromedp.ID("new-chat")),
		chromedp.Click(chromedp.CSS(`#new-chat button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("send")))
	turn := alice.sendTurn("/tool whoami {}")
	if turn.State != "failed" || !strings.HasPrefix(turn.Events, "message ") || !strings.HasSuffix(turn.Events, " error") {
		t.Fatalf("the turn ended %q after the events %q; want it failed by an error event", turn.State, turn.Events)
	}
	if !strings.Contains(turn.Error, "took longer than 1ns") || !strings.Contains(turn.Error, "nothing was stored") {
		t.Fatalf("the page says %q; want the problem's detail", turn.Error)
	}
	if turn.UserState != "failed" || turn.Tool != "" || turn.Reply != "" {
		t.Fatalf("a failed turn still shows parts of itself: %+v", turn)
	}
	if got := value(alice, "read the input", chromedp.Evaluate[string](`document.querySelector('#send input[name=content]').value`)); got != "/tool whoami {}" {
		t.Fatalf("the input holds %q after the failure; want the message back", got)
	}
	alice.run("reload the chat", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("no-messages")))
	if n := value(alice, "count messages", chromedp.Evaluate[int](`document.querySelectorAll('#messages > *').length`)); n != 0 {
		t.Fatalf("the failed turn left %d stored messages", n)
	}
}

// TestBrowserDownstreamTools: with a downstream MCP server configured, the
// agent form groups its tools under the server's name, apart from the
// built-ins; an agent given one of them calls it from the chat, and the
// server saw the call as alice.
func TestBrowserDownstreamTools(t *testing.T) {
	contexts := newBrowsers(t)
	addr := freeAddr(t)
	public := "http://" + addr
	ds := testsvc.StartDownstreamMCP(t, public, public+"/.well-known/idflow/jwks.json")
	dir := t.TempDir()
	servers := filepath.Join(dir, "mcp-servers.json")
	writeFile(t, servers, fmt.Sprintf(`{"servers": [{"name": "tickets", "url": %q, "auth": {"type": "assertion"}}]}`, ds.URL))
	srv := startIdflow(t, map[string]string{"IDFLOW_LISTEN": addr, "IDFLOW_DATA_DIR": dir, "IDFLOW_MCP_SERVERS_FILE": servers}, "--dev")
	alice := &browser{ctx: contexts(), base: srv.URL, t: t}
	alice.signIn("alice")

	alice.run("open agents", chromedp.Navigate(srv.URL+"/#/agents"), chromedp.WaitVisible(chromedp.ID("new-agent")))
	groups := value(alice, "read the tool groups", chromedp.Evaluate[map[string][]string](`Object.fromEntries(
		[...document.querySelectorAll('#new-agent fieldset')].map(f => [f.dataset.server, [...f.querySelectorAll('input[name=tools]')].map(i => i.value)]))`))
	if !slices.Contains(groups[""], "whoami") || slices.ContainsFunc(groups[""], func(n string) bool { return strings.HasPrefix(n, "tickets__") }) {
		t.Fatalf("the built-in group holds %v", groups[""])
	}
	if !slices.Contains(groups["tickets"], "tickets__whoami") || slices.ContainsFunc(groups["tickets"], func(n string) bool { return !strings.HasPrefix(n, "tickets__") }) {
		t.Fatalf("the tickets group holds %v (groups %v)", groups["tickets"], groups)
	}
	if legend := alice.text(`#new-agent fieldset[data-server="tickets"] legend`); legend != "Server tickets" {
		t.Fatalf("the tickets group is titled %q", legend)
	}
	alice.run("create an agent with tickets__whoami",
		chromedp.SendKeys(chromedp.CSS(`#new-agent input[name=name]`), "ticket helper"),
		chromedp.Click(chromedp.CSS(`#new-agent input[name=tools][value=tickets__whoami]`)),
		chromedp.Click(chromedp.CSS(`#new-agent button[type=submit]`)),
		chromedp.WaitVisible(chromedp.Search(`//li[.//strong[text()="ticket helper"]]//button[@data-action="chat"]`)),
		chromedp.Click(chromedp.Search(`//li[.//strong[text()="ticket helper"]]//button[@data-action="chat"]`)),
		chromedp.WaitVisible(chromedp.ID("send")))
	turn := alice.sendTurn("/tool tickets__whoami {}")
	if turn.State != "done" || turn.Tool != "tickets__whoami" || turn.ToolState != "ok" {
		t.Fatalf("the downstream turn: %+v", turn)
	}
	if !strings.Contains(turn.Result, `"sub": "dev-alice"`) {
		t.Fatalf("the downstream server saw %q; want alice", turn.Result)
	}
}
