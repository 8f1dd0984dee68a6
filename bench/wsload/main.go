// Command wsload opens many authenticated run WebSockets against an idflow
// server and reports how many it holds, what they cost the server, and how
// long a run's events take to reach every subscriber.
//
// Every connection is a real client: a token of a real user (from a file, a
// command, or minted by the dev issuer of `idflow serve --dev`), the
// subprotocols idflow.v1 + bearer.<JWT>, and a read loop. Connections are
// spread over the users' own "hold" runs (one long wait step each); one
// more "fan-out" run, started after the ramp, is watched by --fanout of the
// sockets and emits events whose `at` stamps are compared with the time of
// receipt.
//
// The server must allow enough sockets per user: IDFLOW_WS_MAX_PER_USER ≥
// conns / users (+ fanout for the first user), and enough open files
// (ulimit -n) on both sides. See bench/README.md.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/bench/internal/proc"
	"github.com/idflow/idflow/internal/devtoken"
)

type options struct {
	server    string
	tokenFile string
	tokenCmd  string
	devUsers  string
	conns     int
	rate      float64
	duration  time.Duration
	fanout    int
	steps     int
	stepMs    int
	serverPID int
	jsonOut   bool
}

func main() {
	var o options
	flag.StringVar(&o.server, "server", "http://127.0.0.1:8080", "idflow base URL")
	flag.StringVar(&o.tokenFile, "token-file", "", "file with one bearer token per line")
	flag.StringVar(&o.tokenCmd, "token-cmd", "", "shell command printing one bearer token per line")
	flag.StringVar(&o.devUsers, "dev-users", "", "mint tokens for these dev users (comma-separated) from <server>/dev/idp")
	flag.IntVar(&o.conns, "conns", 1000, "WebSockets to hold (the fan-out subscribers included)")
	flag.Float64Var(&o.rate, "rate", 500, "new connections per second during the ramp")
	flag.DurationVar(&o.duration, "duration", 30*time.Second, "how long to hold every connection after the ramp")
	flag.IntVar(&o.fanout, "fanout", 1000, "sockets watching the fan-out run (0: no fan-out measurement)")
	flag.IntVar(&o.steps, "steps", 40, "whoami steps of the fan-out run (3 events each)")
	flag.IntVar(&o.stepMs, "step-ms", 100, "wait between the fan-out run's steps, in ms")
	flag.IntVar(&o.serverPID, "server-pid", 0, "server process id: report its RSS (VmRSS) before and after the ramp")
	flag.BoolVar(&o.jsonOut, "json", false, "print the report as JSON")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wsload:", err)
		os.Exit(1)
	}
	if o.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
		return
	}
	rep.print(os.Stdout)
}

// report is what wsload measured.
type report struct {
	Users           int            `json:"users"`
	Attempted       int            `json:"attempted"`
	Opened          int64          `json:"opened"` // hold sockets opened
	Held            int64          `json:"held"`   // hold sockets still open at the end of the hold
	Failures        map[string]int `json:"failures"`
	RampSeconds     float64        `json:"ramp_seconds"`
	RSSBeforeKiB    int64          `json:"rss_before_kib,omitempty"`
	RSSHeldKiB      int64          `json:"rss_held_kib,omitempty"`
	RSSConns        int64          `json:"rss_conns,omitempty"` // hold sockets open when RSSHeldKiB was read
	BytesPerConn    int64          `json:"bytes_per_conn,omitempty"`
	RSSEndKiB       int64          `json:"rss_end_kib,omitempty"` // at the end of the hold
	BytesPerConnEnd int64          `json:"bytes_per_conn_end,omitempty"`
	FanoutSubs      int            `json:"fanout_subscribers"`
	FanoutEvents    int            `json:"fanout_events"`  // events of the fan-out run
	FanoutSamples   int            `json:"fanout_samples"` // (event, subscriber) receipts measured
	FanoutMissing   int            `json:"fanout_missing"` // receipts expected but not seen
	FanoutP50ms     float64        `json:"fanout_p50_ms"`
	FanoutP99ms     float64        `json:"fanout_p99_ms"`
	FanoutMaxms     float64        `json:"fanout_max_ms"`
	ClosedByServer  map[string]int `json:"closed_by_server"`
	// CPU seconds (user + system) from the end of the fan-out dialing to
	// the end of the hold: the server's (with -server-pid) and wsload's.
	ServerCPUSeconds float64 `json:"server_cpu_seconds,omitempty"`
	LoadCPUSeconds   float64 `json:"load_cpu_seconds,omitempty"`
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "users:                %d\n", r.Users)
	fmt.Fprintf(w, "connections:          %d attempted (%d fan-out), %d hold sockets opened, %d held to the end (ramp %.1fs)\n", r.Attempted, r.FanoutSubs, r.Opened, r.Held, r.RampSeconds)
	if len(r.Failures) > 0 {
		fmt.Fprintf(w, "failures:             %v\n", r.Failures)
	}
	if len(r.ClosedByServer) > 0 {
		fmt.Fprintf(w, "closed by the server: %v\n", r.ClosedByServer)
	}
	if r.RSSBeforeKiB > 0 {
		fmt.Fprintf(w, "server RSS:           %d KiB before, %d KiB with %d sockets → %d bytes (%.1f KiB) per connection\n",
			r.RSSBeforeKiB, r.RSSHeldKiB, r.RSSConns, r.BytesPerConn, float64(r.BytesPerConn)/1024)
		if r.FanoutSubs == 0 {
			fmt.Fprintf(w, "server RSS at the end: %d KiB with %d sockets → %d bytes (%.1f KiB) per connection\n",
				r.RSSEndKiB, r.Held, r.BytesPerConnEnd, float64(r.BytesPerConnEnd)/1024)
		} else {
			fmt.Fprintf(w, "server RSS at the end: %d KiB (after the fan-out: includes the heap's garbage-collection headroom)\n", r.RSSEndKiB)
		}
	}
	if r.FanoutSubs > 0 {
		fmt.Fprintf(w, "fan-out:              %d subscribers × %d events = %d receipts (%d missing)\n", r.FanoutSubs, r.FanoutEvents, r.FanoutSamples, r.FanoutMissing)
		fmt.Fprintf(w, "fan-out latency:      p50 %.2f ms, p99 %.2f ms, max %.2f ms (event at → receipt)\n", r.FanoutP50ms, r.FanoutP99ms, r.FanoutMaxms)
		if r.FanoutSamples > 0 && (r.ServerCPUSeconds > 0 || r.LoadCPUSeconds > 0) {
			fmt.Fprintf(w, "CPU per receipt:      server %.2f µs (%.2f s), wsload %.2f µs (%.2f s)\n",
				r.ServerCPUSeconds*1e6/float64(r.FanoutSamples), r.ServerCPUSeconds,
				r.LoadCPUSeconds*1e6/float64(r.FanoutSamples), r.LoadCPUSeconds)
		}
	}
}

func run(ctx context.Context, o options) (*report, error) {
	o.server = strings.TrimSuffix(o.server, "/")
	tokens, err := loadTokens(ctx, o)
	if err != nil {
		return nil, err
	}
	if len(tokens) == 0 {
		return nil, errors.New("no tokens: give --token-file, --token-cmd or --dev-users")
	}
	if o.fanout > o.conns {
		o.fanout = o.conns
	}
	api := &client{base: o.server, http: &http.Client{Timeout: 30 * time.Second}}
	// coder/websocket refuses a client with a Timeout: dials use contexts.
	wsHTTP := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: -1}}
	rep := &report{Users: len(tokens), Attempted: o.conns, Failures: map[string]int{}, ClosedByServer: map[string]int{}}

	// The fan-out run waits (gate) until its subscribers are in, then emits.
	rampTime := time.Duration(float64(o.conns)/o.rate*float64(time.Second)) + 5*time.Second
	hold := rampTime + o.duration + time.Minute
	holdRuns := make([]string, len(tokens))
	for i, tok := range tokens {
		wf, err := api.workflow(ctx, tok, "wsload hold", []idflow.Step{{ID: "hold", Type: idflow.StepWait, Ms: int(hold / time.Millisecond)}})
		if err != nil {
			return nil, err
		}
		if holdRuns[i], err = api.start(ctx, tok, wf); err != nil {
			return nil, err
		}
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for i, tok := range tokens {
			_ = api.cancel(cctx, tok, holdRuns[i])
		}
	}()

	var fanoutWF string
	if o.fanout > 0 {
		steps := []idflow.Step{{ID: "gate", Type: idflow.StepWait, Ms: int((time.Duration(float64(o.fanout)/o.rate*float64(time.Second)) + 3*time.Second) / time.Millisecond)}}
		for i := 0; i < o.steps; i++ {
			steps = append(steps, idflow.Step{ID: fmt.Sprintf("who%03d", i), Type: idflow.StepTool, Tool: "whoami"},
				idflow.Step{ID: fmt.Sprintf("pause%03d", i), Type: idflow.StepWait, Ms: o.stepMs})
		}
		if fanoutWF, err = api.workflow(ctx, tokens[0], "wsload fan-out", steps); err != nil {
			return nil, err
		}
	}

	if o.serverPID > 0 {
		if rep.RSSBeforeKiB, err = proc.RSS(o.serverPID); err != nil {
			return nil, err
		}
	}

	var (
		opened, closed atomic.Int64
		mu             sync.Mutex
		wg             sync.WaitGroup
	)
	connCtx, cancelConns := context.WithCancel(ctx)
	defer cancelConns()
	fail := func(kind string) {
		mu.Lock()
		rep.Failures[kind]++
		mu.Unlock()
	}
	closedBy := func(kind string) {
		mu.Lock()
		rep.ClosedByServer[kind]++
		mu.Unlock()
	}
	// dial opens one socket to runID and reads it until the end;
	// onEvent sees every event.
	dial := func(tok, runID string, hold bool, onEvent func(stamp, time.Time)) {
		defer wg.Done()
		dctx, cancel := context.WithTimeout(connCtx, 30*time.Second)
		c, resp, err := websocket.Dial(dctx, wsURL(o.server, runID), &websocket.DialOptions{
			Subprotocols: []string{"idflow.v1", "bearer." + tok},
			HTTPClient:   wsHTTP,
		})
		cancel()
		if err != nil {
			if resp != nil {
				fail(fmt.Sprintf("http %d", resp.StatusCode))
			} else {
				fail(proc.ShortErr(err))
			}
			return
		}
		if hold {
			opened.Add(1)
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		for {
			_, b, err := c.Read(connCtx)
			if err != nil {
				if connCtx.Err() == nil {
					if hold {
						closed.Add(1)
					}
					if s := websocket.CloseStatus(err); s != -1 {
						closedBy(fmt.Sprintf("status %d", s))
					} else {
						closedBy(proc.ShortErr(err))
					}
				}
				return
			}
			if onEvent != nil {
				now := time.Now()
				var e stamp
				if json.Unmarshal(b, &e) == nil {
					onEvent(e, now)
				}
			}
		}
	}

	// Ramp: the hold connections, spread over the users.
	start := time.Now()
	holdConns := o.conns - o.fanout
	interval := time.Duration(float64(time.Second) / o.rate)
	tick := time.NewTicker(interval)
	for i := 0; i < holdConns; i++ {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
		wg.Add(1)
		go dial(tokens[i%len(tokens)], holdRuns[i%len(tokens)], true, nil)
	}
	rep.RampSeconds = time.Since(start).Seconds()
	if o.serverPID > 0 {
		// Let the last handshakes finish and the server's GC settle.
		settle := time.NewTimer(3 * time.Second)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-settle.C:
		}
		if rep.RSSHeldKiB, err = proc.RSS(o.serverPID); err != nil {
			return nil, err
		}
		if n := opened.Load() - closed.Load(); n > 0 {
			rep.BytesPerConn = (rep.RSSHeldKiB - rep.RSSBeforeKiB) * 1024 / n
			rep.RSSConns = n
		}
	}

	// The fan-out run and its subscribers.
	type receipt struct {
		seq     int64
		latency time.Duration
	}
	lat := make([][]receipt, o.fanout)
	var fanoutRun string
	if o.fanout > 0 {
		if fanoutRun, err = api.start(ctx, tokens[0], fanoutWF); err != nil {
			return nil, err
		}
		for i := 0; i < o.fanout; i++ {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-tick.C:
			}
			connected := time.Now()
			wg.Add(1)
			go dial(tokens[0], fanoutRun, false, func(e stamp, at time.Time) {
				if e.At.After(connected) { // live, not replayed
					lat[i] = append(lat[i], receipt{e.Seq, at.Sub(e.At)})
				}
			})
		}
	}
	tick.Stop()
	serverCPU0, _ := proc.CPU(o.serverPID)
	loadCPU0, _ := proc.CPU(os.Getpid())

	// Hold; the fan-out run ends meanwhile.
	holdTimer := time.NewTimer(o.duration)
	select {
	case <-ctx.Done():
	case <-holdTimer.C:
	}
	rep.Opened = opened.Load()
	rep.Held = opened.Load() - closed.Load()
	if o.serverPID > 0 {
		if rep.RSSEndKiB, err = proc.RSS(o.serverPID); err != nil {
			return nil, err
		}
		if rep.Held > 0 {
			rep.BytesPerConnEnd = (rep.RSSEndKiB - rep.RSSBeforeKiB) * 1024 / rep.Held
		}
	}
	if o.fanout > 0 {
		if c, err := proc.CPU(o.serverPID); err == nil && o.serverPID > 0 {
			rep.ServerCPUSeconds = (c - serverCPU0).Seconds()
		}
		if c, err := proc.CPU(os.Getpid()); err == nil {
			rep.LoadCPUSeconds = (c - loadCPU0).Seconds()
		}
	}
	cancelConns()
	wg.Wait()

	if o.fanout > 0 {
		evs, err := api.events(ctx, tokens[0], fanoutRun)
		if err != nil {
			return nil, err
		}
		var live []int64
		var gateDone time.Time
		for _, e := range evs {
			if e.Type == idflow.EventStepCompleted && e.StepID == "gate" {
				gateDone = e.At
			}
		}
		for _, e := range evs {
			if !gateDone.IsZero() && e.At.After(gateDone) {
				live = append(live, e.Seq)
			}
		}
		var all []time.Duration
		for _, rs := range lat {
			seen := map[int64]bool{}
			for _, r := range rs {
				seen[r.seq] = true
				if slices.Contains(live, r.seq) {
					all = append(all, r.latency)
				}
			}
			for _, s := range live {
				if !seen[s] {
					rep.FanoutMissing++
				}
			}
		}
		rep.FanoutSubs, rep.FanoutEvents, rep.FanoutSamples = o.fanout, len(live), len(all)
		if len(all) > 0 {
			slices.Sort(all)
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			rep.FanoutP50ms = ms(all[len(all)*50/100])
			rep.FanoutP99ms = ms(all[min(len(all)-1, len(all)*99/100)])
			rep.FanoutMaxms = ms(all[len(all)-1])
		}
	}
	return rep, nil
}

// stamp is the part of an event the fan-out measurement reads (decoding
// less keeps the load generator from being the bottleneck it measures).
type stamp struct {
	Seq int64     `json:"seq"`
	At  time.Time `json:"at"`
}

func wsURL(base, runID string) string {
	return "ws" + strings.TrimPrefix(base, "http") + "/ws/execution/" + runID
}

// loadTokens reads the token source.
func loadTokens(ctx context.Context, o options) ([]string, error) {
	var lines []string
	switch {
	case o.tokenFile != "":
		b, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return nil, err
		}
		lines = strings.Split(string(b), "\n")
	case o.tokenCmd != "":
		out, err := exec.CommandContext(ctx, "sh", "-c", o.tokenCmd).Output()
		if err != nil {
			return nil, fmt.Errorf("--token-cmd: %w", err)
		}
		lines = strings.Split(string(out), "\n")
	case o.devUsers != "":
		for _, u := range strings.Split(o.devUsers, ",") {
			tok, err := devtoken.Get(ctx, o.server, strings.TrimSpace(u), "wsload", 2*time.Hour, "")
			if err != nil {
				return nil, fmt.Errorf("dev token for %s: %w", u, err)
			}
			lines = append(lines, tok)
		}
	}
	var tokens []string
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" {
			tokens = append(tokens, l)
		}
	}
	return tokens, nil
}

// client calls the run routes.
type client struct {
	base string
	http *http.Client
}

func (c *client) do(ctx context.Context, method, path, token string, body, out any, want int) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(bufio.NewReader(io.LimitReader(resp.Body, 16<<20)))
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func (c *client) workflow(ctx context.Context, token, name string, steps []idflow.Step) (string, error) {
	var wf idflow.Workflow
	err := c.do(ctx, "POST", "/api/v1/workflows", token, map[string]any{"name": name, "definition": idflow.Definition{Steps: steps}}, &wf, http.StatusCreated)
	return wf.ID, err
}

func (c *client) start(ctx context.Context, token, wfID string) (string, error) {
	var run idflow.Run
	err := c.do(ctx, "POST", "/api/v1/workflows/"+wfID+"/runs", token, map[string]any{}, &run, http.StatusAccepted)
	return run.ID, err
}

func (c *client) cancel(ctx context.Context, token, runID string) error {
	return c.do(ctx, "POST", "/api/v1/runs/"+runID+"/cancel", token, nil, nil, http.StatusOK)
}

func (c *client) events(ctx context.Context, token, runID string) ([]idflow.Event, error) {
	var out struct {
		Items []idflow.Event `json:"items"`
	}
	err := c.do(ctx, "GET", "/api/v1/runs/"+runID+"/events", token, nil, &out, http.StatusOK)
	return out.Items, err
}
