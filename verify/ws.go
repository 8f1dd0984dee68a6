package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// wsTarget names the run socket in the report.
const wsTarget = "WS /ws/execution/{run_id}"

// How long a socket that should not have opened is read, to show what it
// carries; and how long A's own socket may take to replay its ended run.
const (
	wsLeakWindow = 2 * time.Second
	wsOwnWindow  = 30 * time.Second
)

// wsTasks open A's run socket as A (the control: it streams A's events),
// then as every other caller (refused before the upgrade: 404 for users,
// exactly like a missing run; 401 or 403 for the rest).
func (v *verifier) wsTasks() []task {
	if !v.hasRoute("GET", "/ws/execution/{run_id}") {
		return []task{{phase: "websocket", label: "no run socket", run: func(context.Context) {
			v.note("/openapi.json documents no run WebSocket (/ws/execution/{run_id}): no socket was checked.")
		}}}
	}
	out := []task{{phase: "websocket", label: "A's own socket", run: v.wsControl}}
	for _, c := range v.callers {
		out = append(out, task{phase: "websocket", label: "socket as " + c.Name, run: func(ctx context.Context) { v.wsProbe(ctx, c) }})
	}
	return out
}

func (v *verifier) hasRoute(method, path string) bool {
	for _, op := range v.ops {
		if op.Method == method && op.Path == path {
			return true
		}
	}
	return false
}

// wsAnswer is what a socket handshake got, and what arrived if it opened.
type wsAnswer struct {
	status   int
	body     []byte
	header   http.Header
	opened   bool
	protocol string
	events   []string
	closed   websocket.StatusCode
	ex       Exchange
}

// dialRun opens the run socket the browser way: subprotocols idflow.v1 and
// bearer.<token> (just idflow.v1 without a token). An opened socket is read
// for window, or until it closes.
func (v *verifier) dialRun(ctx context.Context, c *caller, runID string, window time.Duration) (*wsAnswer, error) {
	u := v.cl.base.JoinPath("ws", "execution", runID)
	switch u.Scheme {
	case "https":
		u.Scheme = "wss"
	default:
		u.Scheme = "ws"
	}
	protocols := []string{"idflow.v1"}
	reqHeader := http.Header{}
	switch {
	case c.token == "":
	case v.wsHeader:
		reqHeader.Set("Authorization", "Bearer "+c.token)
	default:
		protocols = append(protocols, "bearer."+c.token)
	}
	v.noteSent(c, u.Path)
	reqHeader.Set("Sec-Websocket-Protocol", strings.Join(protocols, ", "))
	a := &wsAnswer{ex: Exchange{Caller: c.Name, Method: "GET (WebSocket)", URL: v.cl.red.String(u.String()), RequestHeaders: v.cl.red.headers(reqHeader)}}
	if err := v.cl.wait(ctx); err != nil {
		return a, err
	}
	v.cl.sent++
	dctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	conn, resp, err := websocket.Dial(dctx, u.String(), &websocket.DialOptions{HTTPClient: v.cl.hc, Subprotocols: protocols,
		HTTPHeader: http.Header{"Authorization": reqHeader.Values("Authorization")}})
	if resp != nil {
		a.status, a.header = resp.StatusCode, resp.Header
		if resp.Body != nil {
			a.body, _ = io.ReadAll(io.LimitReader(resp.Body, maxShownBody))
		}
		a.ex.Status = resp.StatusCode
		a.ex.ResponseHeaders = v.cl.red.headers(resp.Header)
		a.ex.ResponseBody = v.cl.shown(a.body)
	}
	if err != nil {
		if resp == nil {
			a.ex.Error = v.cl.red.String(err.Error())
			return a, err
		}
		return a, nil // refused: the status says how
	}
	a.opened = true
	a.protocol = conn.Subprotocol()
	defer conn.CloseNow()
	rctx, rcancel := context.WithTimeout(ctx, window)
	defer rcancel()
	conn.SetReadLimit(1 << 20)
	for {
		_, msg, err := conn.Read(rctx)
		if err != nil {
			a.closed = websocket.CloseStatus(err)
			break
		}
		a.events = append(a.events, string(msg))
	}
	a.ex.ResponseBody = v.cl.shown([]byte(strings.Join(a.events, "\n")))
	if a.closed != -1 {
		a.ex.ResponseBody += fmt.Sprintf("\n(closed with %d)", a.closed)
	}
	return a, nil
}

// wsControl: A's socket on A's ended run replays its events, each A's,
// and closes normally; the server answers idflow.v1, never the token.
func (v *verifier) wsControl(ctx context.Context) {
	a, err := v.dialRun(ctx, v.a, v.fx.ids["run"], wsOwnWindow)
	if err == nil && !a.opened && refused(a.status) {
		// A proxy in front (oauth2-proxy) may only pass the token in the
		// Authorization header, which a browser cannot send but the
		// verifier can: if A's own socket opens that way, every caller's
		// is tried that way.
		v.wsHeader = true
		h, herr := v.dialRun(ctx, v.a, v.fx.ids["run"], wsOwnWindow)
		if herr == nil && h.opened {
			v.note(fmt.Sprintf("A's run socket with the token as the bearer.<token> subprotocol was refused (%d), with the token in the Authorization header it opened: every socket was tried that way (the proxy in front does not pass the subprotocol's token).", a.status))
			a = h
		} else {
			v.wsHeader = false
		}
	}
	expected := "A's socket opens (101, subprotocol idflow.v1) and replays A's run"
	if err != nil {
		v.fail("controls", wsTarget, nameA, expected, v.cl.red.String(err.Error()), []Exchange{a.ex})
		return
	}
	var problems []string
	switch {
	case !a.opened:
		problems = append(problems, fmt.Sprintf("A's own socket was refused with %d: the other callers' refusals prove nothing", a.status))
	case a.protocol != "idflow.v1":
		problems = append(problems, fmt.Sprintf("the server answered subprotocol %q", a.protocol))
	case len(a.events) == 0:
		problems = append(problems, "A's socket carried no event of A's run")
	}
	for _, e := range a.events {
		var ev struct {
			RunID  string `json:"run_id"`
			UserID string `json:"user_id"`
		}
		if json.Unmarshal([]byte(e), &ev) != nil || ev.RunID != v.fx.ids["run"] || ev.UserID != v.a.userID {
			problems = append(problems, "an event that is not of A's run: "+v.cl.red.String(e))
			break
		}
	}
	v.verdict("controls", wsTarget, v.a, expected, fmt.Sprintf("101, %d events", len(a.events)), problems, []Exchange{a.ex})
}

// wsProbe opens A's run socket as c, then a missing run's.
func (v *verifier) wsProbe(ctx context.Context, c *caller) {
	runID := v.fx.ids["run"]
	a, err := v.dialRun(ctx, c, runID, wsLeakWindow)
	if err != nil {
		v.fail("websocket", wsTarget, c.Name, "refused", v.cl.red.String(err.Error()), []Exchange{a.ex})
		return
	}
	var problems []string
	evidence := []Exchange{a.ex}
	want := "404 before the upgrade, like a missing run"
	switch c.role {
	case roleApp:
		want = "403 before the upgrade"
	case roleUnauth:
		want = "401 before the upgrade"
	}
	got := fmt.Sprintf("%d %s", a.status, http.StatusText(a.status))
	if a.opened {
		got = fmt.Sprintf("upgraded (101) and received %d events", len(a.events))
		problems = append(problems, fmt.Sprintf("%s opened a socket on A's run (101 Switching Protocols) and received %d of its events", c.Label, len(a.events)))
		sc := scopeNothing
		if c.role == roleUser || c.role == roleAdmin {
			sc = scopeOwn
		}
		for _, e := range a.events {
			r := &response{status: http.StatusOK, header: http.Header{}, body: []byte(e)}
			problems = append(problems, v.leaks(c, r, sc)...)
		}
	} else {
		r := &response{status: a.status, header: a.header, body: a.body}
		switch c.role {
		case roleUser, roleAdmin:
			if a.status != http.StatusNotFound {
				problems = append(problems, fmt.Sprintf("refused with %d; another user's run must answer 404", a.status))
			}
			problems = append(problems, v.leaks(c, r, scopeOwn)...)
			m, err := v.dialRun(ctx, c, randomLike(runID), wsLeakWindow)
			if err != nil {
				problems = append(problems, "the socket of a missing run: "+v.cl.red.String(err.Error()))
			} else {
				evidence = append(evidence, m.ex)
				switch {
				case m.opened:
					problems = append(problems, "a socket on a run that does not exist opened")
				case m.status != a.status:
					problems = append(problems, fmt.Sprintf("A's run answers %d, a missing run %d: the status tells them apart", a.status, m.status))
				case !bytes.Equal(m.body, a.body):
					problems = append(problems, "the refusal differs from a missing run's, so it tells them apart")
				}
			}
		default:
			if !refused(a.status) {
				problems = append(problems, fmt.Sprintf("answered %d to %s", a.status, c.Label))
			}
			problems = append(problems, v.leaks(c, r, scopeNothing)...)
		}
	}
	v.verdict("websocket", wsTarget, c, want, got, problems, evidence)
}
