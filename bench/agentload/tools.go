package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/idflow/idflow/bench/internal/proc"
)

// toolSeries is one kind of call the tools benchmark makes.
type toolSeries struct {
	Name   string `json:"name"`
	direct bool   // to the downstream server itself, not through idflow
	tool   string
}

type toolsLevel struct {
	Concurrency int                `json:"concurrency"`
	Calls       map[string]dist    `json:"calls"`
	Failures    map[string]int     `json:"failures"`
	FirstErr    map[string]string  `json:"first_error,omitempty"`
	Ratio       map[string]float64 `json:"ratio_p50"` // series p50 / direct p50
	Overhead    map[string]float64 `json:"overhead_p50_ms"`
	Load        [2]string          `json:"loadavg"`
}

func cmdTools(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("tools", flag.ExitOnError)
	base := fs.String("idflow", "http://127.0.0.1:18080", "idflow's base URL (its /mcp is called)")
	downstream := fs.String("downstream", "http://127.0.0.1:18191/mcp", "the downstream MCP server's URL (called directly as the baseline)")
	tool := fs.String("tool", "bench__echo", "the downstream tool as idflow exposes it (<server>__<tool>)")
	builtin := fs.String("builtin", "whoami", "a built-in tool called through /mcp too, for reference (empty: none)")
	users := fs.String("dev-users", "alice,bob,carol,admin", "dev users whose tokens the MCP sessions use, in turn")
	levels := fs.String("concurrency", "1,8", "client concurrency levels, comma-separated")
	calls := fs.Int("calls", 300, "calls per worker per series at each level")
	warm := fs.Int("warmup", 20, "calls per worker per series before measuring")
	serverPID := fs.Int("server-pid", 0, "idflow's process id: measure its CPU per call (one series at a time, after the latency levels)")
	downPID := fs.Int("downstream-pid", 0, "the downstream server's process id: its CPU per call too")
	cpuCalls := fs.Int("cpu-calls", 2000, "calls per series for the CPU measurement (4 clients)")
	jsonOut := fs.Bool("json", false, "print the report as JSON")
	_ = fs.Parse(args)

	*base = strings.TrimSuffix(*base, "/")
	tokens, err := devTokens(ctx, *base, *users)
	if err != nil {
		return err
	}
	_, downTool, ok := strings.Cut(*tool, "__")
	if !ok {
		return fmt.Errorf("-tool %q is not <server>__<tool>", *tool)
	}
	series := []toolSeries{{Name: "direct", direct: true, tool: downTool}, {Name: "idflow", tool: *tool}}
	if *builtin != "" {
		series = append(series, toolSeries{Name: "idflow-" + *builtin, tool: *builtin})
	}
	var out []toolsLevel
	for _, l := range strings.Split(*levels, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(l))
		if err != nil || c < 1 {
			return fmt.Errorf("-concurrency: %q is not a positive integer", l)
		}
		lv, err := toolsRun(ctx, *base, *downstream, tokens, series, c, *calls, *warm)
		if err != nil {
			return err
		}
		out = append(out, lv)
		if !*jsonOut {
			printToolsLevel(os.Stdout, lv, series)
		}
	}
	var cpu []toolsCPU
	if *serverPID > 0 {
		if cpu, err = toolsCPUPerCall(ctx, *base, *downstream, tokens, series, *cpuCalls, *serverPID, *downPID); err != nil {
			return err
		}
		if !*jsonOut {
			printToolsCPU(os.Stdout, cpu)
		}
	}
	if *jsonOut {
		printJSON(os.Stdout, map[string]any{"levels": out, "cpu": cpu})
	}
	for _, lv := range out {
		for _, n := range lv.Failures {
			if n > 0 {
				return errors.New("some calls failed")
			}
		}
	}
	return nil
}

// toolsRun runs c workers; each has an MCP session with idflow and one
// with the downstream server, and calls the series in turn (the order
// rotating), so that every series sees the same load.
func toolsRun(ctx context.Context, base, downstream string, tokens []string, series []toolSeries, c, calls, warm int) (toolsLevel, error) {
	lv := toolsLevel{Concurrency: c, Calls: map[string]dist{}, Failures: map[string]int{}, FirstErr: map[string]string{},
		Ratio: map[string]float64{}, Overhead: map[string]float64{}}
	lv.Load[0] = loadAvg()
	type worker struct {
		via, direct *mcp.ClientSession
		lat         [][]time.Duration
		fails       []int
		firstErr    []error
	}
	ws := make([]*worker, c)
	for i := range ws {
		hc := sourceClient(i, 4)
		via, err := mcpConnect(ctx, hc, base+"/mcp", tokens[i%len(tokens)])
		if err != nil {
			return lv, fmt.Errorf("MCP session with idflow: %w", err)
		}
		defer via.Close()
		direct, err := mcpConnect(ctx, hc, downstream, "agentload")
		if err != nil {
			return lv, fmt.Errorf("MCP session with the downstream server: %w", err)
		}
		defer direct.Close()
		ws[i] = &worker{via: via, direct: direct, lat: make([][]time.Duration, len(series)),
			fails: make([]int, len(series)), firstErr: make([]error, len(series))}
	}
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Go(func() {
			for k := range warm + calls {
				for j := range series {
					s := (i + k + j) % len(series)
					cs := w.via
					if series[s].direct {
						cs = w.direct
					}
					start := time.Now()
					err := callTool(ctx, cs, series[s].tool)
					d := time.Since(start)
					if k < warm {
						continue
					}
					if err != nil {
						w.fails[s]++
						if w.firstErr[s] == nil {
							w.firstErr[s] = err
						}
						continue
					}
					w.lat[s] = append(w.lat[s], d)
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return lv, err
	}
	lv.Load[1] = loadAvg()
	for s, sr := range series {
		var all []time.Duration
		for _, w := range ws {
			all = append(all, w.lat[s]...)
			lv.Failures[sr.Name] += w.fails[s]
			if w.firstErr[s] != nil && lv.FirstErr[sr.Name] == "" {
				lv.FirstErr[sr.Name] = w.firstErr[s].Error()
			}
		}
		lv.Calls[sr.Name] = summarize(all)
	}
	for _, sr := range series[1:] {
		lv.Ratio[sr.Name] = lv.Calls[sr.Name].P50 / lv.Calls["direct"].P50
		lv.Overhead[sr.Name] = lv.Calls[sr.Name].P50 - lv.Calls["direct"].P50
	}
	return lv, nil
}

// callTool calls tool with a short text and checks that it answered.
func callTool(ctx context.Context, cs *mcp.ClientSession, tool string) error {
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: map[string]any{"text": "hello from agentload"}})
	if err != nil {
		return err
	}
	if res.IsError {
		msg := "an error result"
		if len(res.Content) > 0 {
			if t, ok := res.Content[0].(*mcp.TextContent); ok {
				msg = t.Text
			}
		}
		return errors.New(msg)
	}
	return nil
}

// mcpConnect opens a go-sdk client session with endpoint, sending token as
// a bearer on every request. No standing SSE stream: only answers to the
// client's own requests are read, on both sides.
func mcpConnect(ctx context.Context, hc *http.Client, endpoint, token string) (*mcp.ClientSession, error) {
	client := mcp.NewClient(&mcp.Implementation{Name: "agentload", Version: "1"}, nil)
	t := &mcp.StreamableClientTransport{Endpoint: endpoint, DisableStandaloneSSE: true,
		HTTPClient: &http.Client{Transport: bearer{token: token, base: hc.Transport}}}
	return client.Connect(ctx, t, nil)
}

type bearer struct {
	token string
	base  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

func printToolsLevel(w io.Writer, lv toolsLevel, series []toolSeries) {
	fmt.Fprintf(w, "MCP tools/call, %d concurrent clients, series interleaved call by call (load avg %s → %s)\n", lv.Concurrency, lv.Load[0], lv.Load[1])
	fmt.Fprintf(w, "%-16s %6s %5s %9s %9s %9s %8s %10s\n", "series", "calls", "fail", "p50 ms", "p90 ms", "p99 ms", "ratio", "over ms")
	for _, s := range series {
		d := lv.Calls[s.Name]
		ratio, over := "", ""
		if !s.direct {
			ratio, over = fmt.Sprintf("%.2f×", lv.Ratio[s.Name]), fmt.Sprintf("%+.3f", lv.Overhead[s.Name])
		}
		fmt.Fprintf(w, "%-16s %6d %5d %9.3f %9.3f %9.3f %8s %10s\n", s.Name, d.N, lv.Failures[s.Name], d.P50, d.P90, d.P99, ratio, over)
	}
	for name, e := range lv.FirstErr {
		fmt.Fprintf(w, "first error of %s: %s\n", name, e)
	}
}

// toolsCPU is the CPU the servers spent per call of one series.
type toolsCPU struct {
	Series     string  `json:"series"`
	Calls      int     `json:"calls"`
	IdflowUS   float64 `json:"idflow_cpu_us_per_call"`
	DownUS     float64 `json:"downstream_cpu_us_per_call"`
	ElapsedSec float64 `json:"elapsed_s"`
}

// toolsCPUPerCall makes calls of one series at a time from 4 clients and
// reads the servers' CPU time around each.
func toolsCPUPerCall(ctx context.Context, base, downstream string, tokens []string, series []toolSeries, calls, pid, downPID int) ([]toolsCPU, error) {
	const clients = 4
	var out []toolsCPU
	for _, sr := range series {
		sessions := make([]*mcp.ClientSession, clients)
		for i := range sessions {
			hc := sourceClient(i, 4)
			var err error
			if sr.direct {
				sessions[i], err = mcpConnect(ctx, hc, downstream, "agentload")
			} else {
				sessions[i], err = mcpConnect(ctx, hc, base+"/mcp", tokens[i%len(tokens)])
			}
			if err != nil {
				return nil, err
			}
			defer sessions[i].Close()
			if err := callTool(ctx, sessions[i], sr.tool); err != nil { // set-up and first use, not counted
				return nil, fmt.Errorf("%s: %w", sr.Name, err)
			}
		}
		read := func() (time.Duration, time.Duration, error) {
			a, err := proc.CPU(pid)
			if err != nil || downPID == 0 {
				return a, 0, err
			}
			b, err := proc.CPU(downPID)
			return a, b, err
		}
		a0, b0, err := read()
		if err != nil {
			return nil, err
		}
		start := time.Now()
		var wg sync.WaitGroup
		var failed atomic.Int64
		for _, cs := range sessions {
			wg.Go(func() {
				for range calls / clients {
					if callTool(ctx, cs, sr.tool) != nil {
						failed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		a1, b1, err := read()
		if err != nil {
			return nil, err
		}
		if n := failed.Load(); n > 0 {
			return nil, fmt.Errorf("%s: %d calls failed", sr.Name, n)
		}
		n := float64(calls / clients * clients)
		out = append(out, toolsCPU{Series: sr.Name, Calls: int(n), IdflowUS: float64((a1 - a0).Microseconds()) / n,
			DownUS: float64((b1 - b0).Microseconds()) / n, ElapsedSec: elapsed.Seconds()})
	}
	return out, nil
}

func printToolsCPU(w io.Writer, cpu []toolsCPU) {
	fmt.Fprintf(w, "server CPU per call (4 clients, one series at a time; /proc/<pid>/stat, 10 ms ticks)\n")
	fmt.Fprintf(w, "%-16s %6s %16s %20s %10s\n", "series", "calls", "idflow µs/call", "downstream µs/call", "elapsed s")
	for _, c := range cpu {
		fmt.Fprintf(w, "%-16s %6d %16.0f %20.0f %10.1f\n", c.Series, c.Calls, c.IdflowUS, c.DownUS, c.ElapsedSec)
	}
}
