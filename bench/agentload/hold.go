package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idflow/idflow/bench/internal/proc"
)

// holdPoint is idflow's memory with some streams held (or after release).
type holdPoint struct {
	Label     string  `json:"label"`
	Streams   int64   `json:"streams"`    // turns past their first delta and not done
	ModelHeld int64   `json:"model_held"` // streams the model server holds
	RSSKiB    int64   `json:"rss_kib"`
	PerStream float64 `json:"bytes_per_stream,omitempty"` // (RSS − RSS at 0) / streams
	Goroutine float64 `json:"goroutines,omitempty"`
	HeapInuse float64 `json:"heap_inuse_bytes,omitempty"`
	Stacks    float64 `json:"stack_inuse_bytes,omitempty"`
	FreeKept  float64 `json:"heap_free_kept_bytes,omitempty"` // free heap the runtime has not returned to the OS
	Load      string  `json:"loadavg"`
}

type holdReport struct {
	Points   []holdPoint    `json:"points"`
	Opened   int64          `json:"opened"`
	Done     int64          `json:"done"` // streams that reached done after the release
	Failures map[string]int `json:"failures"`
}

func cmdHold(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("hold", flag.ExitOnError)
	base := fs.String("idflow", "http://127.0.0.1:18080", "idflow's base URL")
	model := fs.String("model", "http://127.0.0.1:18181", "the model server (its /bench/release and /bench/stats)")
	users := fs.String("dev-users", "alice,bob,carol,admin", "dev users whose tokens the streams use, in turn")
	streams := fs.Int("streams", 1000, "streamed turns to hold at once")
	step := fs.Int("step", 250, "measure every this many streams")
	open := fs.Int("open", 8, "turns being opened at once (request → first delta)")
	settle := fs.Duration("settle", 5*time.Second, "wait before each reading")
	after := fs.String("after", "5s,60s,150s", "readings after the release (the clients then close their kept-alive connections), since the release; the runtime collects at least every 2 minutes")
	pid := fs.Int("server-pid", 0, "idflow's process id (its VmRSS is read from /proc)")
	metrics := fs.String("metrics", "", "idflow's /metrics URL (IDFLOW_METRICS_LISTEN), for goroutines and heap in use")
	jsonOut := fs.Bool("json", false, "print the report as JSON")
	_ = fs.Parse(args)
	if *pid == 0 {
		return errors.New("-server-pid is required")
	}
	*base, *model = strings.TrimSuffix(*base, "/"), strings.TrimSuffix(*model, "/")
	tokens, err := devTokens(ctx, *base, *users)
	if err != nil {
		return err
	}
	clients := make([]*http.Client, 250)
	for i := range clients {
		clients[i] = sourceClient(i, 4)
	}
	// Every turn's session exists before the first reading.
	sessions := make([]string, *streams)
	{
		var wg sync.WaitGroup
		var mu sync.Mutex
		var firstErr error
		sem := make(chan struct{}, 8)
		for i := range sessions {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				id, err := newSession(ctx, clients[i%len(clients)], *base, tokens[i%len(tokens)])
				mu.Lock()
				defer mu.Unlock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				sessions[i] = id
			})
		}
		wg.Wait()
		if firstErr != nil {
			return fmt.Errorf("create sessions: %w", firstErr)
		}
	}
	// A few whole turns first, so that what the first turn sets up once is
	// not counted per stream.
	for i := range 20 {
		s, err := newSession(ctx, clients[0], *base, tokens[i%len(tokens)])
		if err != nil {
			return err
		}
		if r := streamTurn(ctx, clients[0], *base, tokens[i%len(tokens)], s, "warm-up", nil); r.Err != nil {
			return fmt.Errorf("warm-up turn: %w", r.Err)
		}
	}

	rep := &holdReport{Failures: map[string]int{}}
	var held, done atomic.Int64
	var mu sync.Mutex
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		rep.Failures[proc.ShortErr(err)]++
	}
	read := func(label string, wait time.Duration) error {
		if err := sleepCtx(ctx, wait); err != nil {
			return err
		}
		p := holdPoint{Label: label, Streams: held.Load() - done.Load(), Load: loadAvg()}
		var err error
		if p.RSSKiB, err = proc.RSS(*pid); err != nil {
			return err
		}
		p.ModelHeld = modelHeld(ctx, *model)
		if *metrics != "" {
			if g, err := gauges(ctx, *metrics, "go_goroutines", "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes",
				"go_memstats_heap_idle_bytes", "go_memstats_heap_released_bytes"); err == nil {
				p.Goroutine, p.HeapInuse, p.Stacks = g["go_goroutines"], g["go_memstats_heap_inuse_bytes"], g["go_memstats_stack_inuse_bytes"]
				p.FreeKept = g["go_memstats_heap_idle_bytes"] - g["go_memstats_heap_released_bytes"]
			}
		}
		if len(rep.Points) > 0 && p.Streams > 0 {
			p.PerStream = float64(p.RSSKiB-rep.Points[0].RSSKiB) * 1024 / float64(p.Streams)
		}
		rep.Points = append(rep.Points, p)
		if !*jsonOut {
			printHoldPoint(os.Stdout, p, len(rep.Points) == 1)
		}
		return nil
	}
	if err := read("before", *settle); err != nil {
		return err
	}

	sem := make(chan struct{}, *open)
	var wg sync.WaitGroup
	opened := 0
	for target := *step; ; target += *step {
		target = min(target, *streams)
		for ; opened < target; opened++ {
			i := opened
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			}
			rep.Opened++
			wg.Go(func() {
				released := false
				free := func() {
					if !released {
						released = true
						<-sem
					}
				}
				defer free()
				r := streamTurn(ctx, clients[i%len(clients)], *base, tokens[i%len(tokens)], sessions[i],
					"hold this stream open "+holdMarker, func() { held.Add(1); free() })
				if r.Err != nil {
					fail(r.Err)
					if r.TTFT > 0 {
						done.Add(1) // it was counted as held
					}
					return
				}
				done.Add(1)
			})
		}
		// Wait until every opened turn has its first delta (or failed).
		for held.Load()+int64(sumFailures(rep, &mu)) < int64(target) {
			if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
				return err
			}
		}
		if err := read(fmt.Sprintf("%d held", target), *settle); err != nil {
			return err
		}
		if target == *streams {
			break
		}
	}
	release := time.Now()
	if err := apiDo(ctx, http.DefaultClient, "POST", *model+"/bench/release", "", nil, nil, http.StatusNoContent); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	wg.Wait()
	rep.Done = done.Load()
	// The users leave: their kept-alive connections close.
	for _, c := range clients {
		c.CloseIdleConnections()
	}
	for _, a := range strings.Split(*after, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(a))
		if err != nil {
			return fmt.Errorf("-after: %w", err)
		}
		if err := read("released +"+d.String(), time.Until(release.Add(d))); err != nil {
			return err
		}
	}
	if *jsonOut {
		printJSON(os.Stdout, rep)
	} else {
		fmt.Printf("%d turns opened, %d ended with done; failures: %v\n", rep.Opened, rep.Done, rep.Failures)
	}
	if len(rep.Failures) > 0 {
		return errors.New("some turns failed")
	}
	return nil
}

func sumFailures(rep *holdReport, mu *sync.Mutex) int {
	mu.Lock()
	defer mu.Unlock()
	n := 0
	for _, v := range rep.Failures {
		n += v
	}
	return n
}

// modelHeld asks the model server how many streams it holds (-1: unknown).
func modelHeld(ctx context.Context, model string) int64 {
	var s struct {
		Held int64 `json:"held"`
	}
	req, err := http.NewRequestWithContext(ctx, "GET", model+"/bench/stats", nil)
	if err != nil {
		return -1
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	if json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&s) != nil {
		return -1
	}
	return s.Held
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func printHoldPoint(w io.Writer, p holdPoint, header bool) {
	if header {
		fmt.Fprintf(w, "%-16s %7s %6s %9s %12s %10s %9s %9s %9s  %s\n", "", "streams", "model", "RSS KiB", "bytes/stream",
			"goroutines", "heap KiB", "stack KiB", "free KiB", "load avg")
	}
	per := ""
	if p.PerStream > 0 {
		per = fmt.Sprintf("%.0f", p.PerStream)
	}
	fmt.Fprintf(w, "%-16s %7d %6d %9d %12s %10.0f %9.0f %9.0f %9.0f  %s\n", p.Label, p.Streams, p.ModelHeld, p.RSSKiB, per,
		p.Goroutine, p.HeapInuse/1024, p.Stacks/1024, p.FreeKept/1024, p.Load)
}
