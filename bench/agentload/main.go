// Command agentload measures idflow's agent runtime over real sockets,
// side by side with the servers it fronts, in one run:
//
//	agentload model  …   a stand-in OpenAI-compatible model server (streams a fixed reply)
//	agentload mcp    …   a stand-in downstream MCP server (go-sdk) with an echo tool
//	agentload ttft   …   time to first token: idflow's streamed turns vs the model server called directly
//	agentload tools  …   MCP tools/call through idflow's /mcp vs the downstream server called directly
//	agentload hold   …   many streamed turns held open at once, and idflow's memory for them
//
// The servers are started by bench/agent.sh; see bench/README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/idflow/idflow/internal/devtoken"
)

func main() {
	cmds := map[string]func(context.Context, []string) error{
		"model": cmdModel, "mcp": cmdMCP, "ttft": cmdTTFT, "tools": cmdTools, "hold": cmdHold,
	}
	if len(os.Args) < 2 || cmds[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, "usage: agentload model|mcp|ttft|tools|hold [flags] (-h for each)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmds[os.Args[1]](ctx, os.Args[2:]); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "agentload %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// devTokens mints a token per dev user at server.
func devTokens(ctx context.Context, server, users string) ([]string, error) {
	var out []string
	for _, u := range strings.Split(users, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		tok, err := devtoken.Get(ctx, server, u, "agentload", 2*time.Hour, "")
		if err != nil {
			return nil, fmt.Errorf("dev token for %s at %s: %w", u, server, err)
		}
		out = append(out, tok)
	}
	if len(out) == 0 {
		return nil, errors.New("no dev users given")
	}
	return out, nil
}

// sourceClient is an HTTP client whose connections leave from one loopback
// address of 127.0.0.0/8 (per-peer limits see many clients, as they
// would see many users) and that keeps up to conns connections alive.
func sourceClient(i, conns int) *http.Client {
	ip := net.IPv4(127, 0, byte(1+i/250%250), byte(2+i%250))
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 10 * time.Second}
	return &http.Client{Transport: &http.Transport{
		Proxy: nil, DialContext: d.DialContext, MaxIdleConnsPerHost: conns, MaxIdleConns: conns,
		IdleConnTimeout: time.Minute, DisableCompression: true,
	}}
}

// apiDo sends a JSON request with a bearer token and decodes the answer.
func apiDo(ctx context.Context, hc *http.Client, method, url, token string, body, out any, want int) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// newSession creates a chat session and answers its id.
func newSession(ctx context.Context, hc *http.Client, base, token string) (string, error) {
	var s struct {
		ID string `json:"id"`
	}
	err := apiDo(ctx, hc, "POST", base+"/api/v1/sessions", token, map[string]string{"title": "agentload"}, &s, http.StatusCreated)
	return s.ID, err
}

// gauges reads Prometheus gauges (name → value) from a /metrics URL.
func gauges(ctx context.Context, url string, names ...string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		name, val, ok := strings.Cut(line, " ")
		if ok && slices.Contains(names, name) {
			if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
				out[name] = v
			}
		}
	}
	return out, nil
}

// dist summarizes latencies.
type dist struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

func summarize(ds []time.Duration) dist {
	if len(ds) == 0 {
		return dist{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(p float64) float64 { return ms(s[min(len(s)-1, int(p*float64(len(s))))]) }
	return dist{N: len(s), P50: median(s), P90: q(0.90), P99: q(0.99), Max: ms(s[len(s)-1])}
}

// median of sorted durations, in ms.
func median(s []time.Duration) float64 {
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return ms(s[n/2])
	}
	return (ms(s[n/2-1]) + ms(s[n/2])) / 2
}

func medianOf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// loadAvg is /proc/loadavg's first three fields.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
