package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// ttftTarget is one side of the comparison: the model server called
// directly, or an idflow server (whose model is that server).
type ttftTarget struct {
	Name   string `json:"name"`
	Base   string `json:"base"`
	direct bool
	tokens []string
}

type ttftReport struct {
	Load      [2]string            `json:"loadavg"` // before, after
	Streams   int                  `json:"streams"`
	Rounds    int                  `json:"rounds"`
	Turns     int                  `json:"turns_per_stream_per_round"`
	Targets   []ttftTarget         `json:"targets"`
	TTFT      map[string]dist      `json:"ttft"`
	Turn      map[string]dist      `json:"turn"`
	Failures  map[string]int       `json:"failures"`
	FirstErr  map[string]string    `json:"first_error,omitempty"`
	Overhead  map[string]float64   `json:"overhead_ms"`           // median TTFT − median direct TTFT, all rounds pooled
	RoundDiff map[string]float64   `json:"overhead_round_med_ms"` // median over rounds of (round median − direct round median)
	RoundP50  map[string][]float64 `json:"round_medians_ms"`
	// Phases are medians of where the time to the first token went:
	// to_model (request start → the model server sent its first chunk, by
	// its clock stamp), back (that → the client has the text), and for
	// idflow the message and memory events.
	Phases  map[string]map[string]float64 `json:"phases_p50_ms"`
	samples map[string][]turnResult
}

func cmdTTFT(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("ttft", flag.ExitOnError)
	model := fs.String("model", "http://127.0.0.1:18181/v1", "the model server's base URL (the baseline)")
	idflows := fs.String("idflow", "idflow=http://127.0.0.1:18080", "idflow servers, name=URL, comma-separated")
	users := fs.String("dev-users", "alice,bob,carol,admin", "dev users whose tokens the streams use, in turn")
	streams := fs.Int("streams", 50, "concurrent streams per side")
	turns := fs.Int("turns", 4, "turns each stream makes per round, one after the other")
	rounds := fs.Int("rounds", 10, "rounds; each runs every side once, in a rotating order")
	jitter := fs.Duration("jitter", time.Second, "each stream starts after a random delay up to this, so that turns do not start in step")
	content := fs.String("content", "what is on my calendar for the kayak trip?", "the user's message")
	jsonOut := fs.Bool("json", false, "print the report as JSON")
	_ = fs.Parse(args)

	targets := []ttftTarget{{Name: "direct", Base: strings.TrimSuffix(*model, "/"), direct: true}}
	for _, kv := range strings.Split(*idflows, ",") {
		name, url, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return fmt.Errorf("-idflow: %q is not name=URL", kv)
		}
		t := ttftTarget{Name: name, Base: strings.TrimSuffix(url, "/")}
		var err error
		if t.tokens, err = devTokens(ctx, t.Base, *users); err != nil {
			return err
		}
		targets = append(targets, t)
	}
	clients := make([]*http.Client, *streams)
	for i := range clients {
		clients[i] = sourceClient(i, 4)
	}
	rep := &ttftReport{Streams: *streams, Rounds: *rounds, Turns: *turns, Targets: targets,
		TTFT: map[string]dist{}, Turn: map[string]dist{}, Failures: map[string]int{}, FirstErr: map[string]string{},
		Overhead: map[string]float64{}, Phases: map[string]map[string]float64{}, RoundDiff: map[string]float64{}, RoundP50: map[string][]float64{},
		samples: map[string][]turnResult{}}
	rep.Load[0] = loadAvg()

	// A warm-up round (not counted): connections, first-use caches.
	for _, t := range targets {
		res, err := ttftRound(ctx, t, clients, 1, *jitter, *content)
		if err != nil {
			return fmt.Errorf("warm-up of %s: %w", t.Name, err)
		}
		for _, x := range res {
			if x.Err != nil {
				return fmt.Errorf("warm-up of %s: %w", t.Name, x.Err)
			}
		}
	}
	for r := range *rounds {
		for i := range targets {
			t := targets[(r+i)%len(targets)]
			res, err := ttftRound(ctx, t, clients, *turns, *jitter, *content)
			if err != nil {
				return err
			}
			var ok []time.Duration
			for _, x := range res {
				if x.Err == nil {
					ok = append(ok, x.TTFT)
				}
			}
			rep.RoundP50[t.Name] = append(rep.RoundP50[t.Name], summarize(ok).P50)
			rep.samples[t.Name] = append(rep.samples[t.Name], res...)
		}
		if !*jsonOut {
			fmt.Fprintf(os.Stderr, "round %d/%d done (load %s)\n", r+1, *rounds, loadAvg())
		}
	}
	rep.Load[1] = loadAvg()
	for _, t := range targets {
		var ttft, turn, toModel, back, message, memory []time.Duration
		for _, x := range rep.samples[t.Name] {
			if x.Err != nil {
				rep.Failures[t.Name]++
				if rep.FirstErr[t.Name] == "" {
					rep.FirstErr[t.Name] = x.Err.Error()
				}
				continue
			}
			ttft, turn = append(ttft, x.TTFT), append(turn, x.Total)
			toModel, back = append(toModel, x.ToModel), append(back, x.TTFT-x.ToModel)
			message, memory = append(message, x.Message), append(memory, x.Memory)
		}
		rep.Phases[t.Name] = map[string]float64{"to_model": summarize(toModel).P50, "back": summarize(back).P50}
		if !t.direct {
			rep.Phases[t.Name]["message"], rep.Phases[t.Name]["memory"] = summarize(message).P50, summarize(memory).P50
		}
		rep.TTFT[t.Name], rep.Turn[t.Name] = summarize(ttft), summarize(turn)
	}
	for _, t := range targets[1:] {
		rep.Overhead[t.Name] = rep.TTFT[t.Name].P50 - rep.TTFT["direct"].P50
		var diffs []float64
		for r := range rep.RoundP50[t.Name] {
			diffs = append(diffs, rep.RoundP50[t.Name][r]-rep.RoundP50["direct"][r])
		}
		rep.RoundDiff[t.Name] = medianOf(diffs)
	}
	if *jsonOut {
		printJSON(os.Stdout, rep)
	} else {
		rep.print(os.Stdout)
	}
	for _, n := range rep.Failures {
		if n > 0 {
			return errors.New("some turns failed")
		}
	}
	return nil
}

// ttftRound runs one side once: every stream makes turns turns, the first
// after a random delay up to jitter. An idflow turn gets a session of its
// own, made before the round (not timed).
func ttftRound(ctx context.Context, t ttftTarget, clients []*http.Client, turns int, jitter time.Duration, content string) ([]turnResult, error) {
	sessions := make([][]string, len(clients))
	if !t.direct {
		var mu sync.Mutex
		var firstErr error
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for w := range clients {
			sessions[w] = make([]string, turns)
			for k := range turns {
				wg.Go(func() {
					sem <- struct{}{}
					defer func() { <-sem }()
					id, err := newSession(ctx, clients[w], t.Base, t.tokens[w%len(t.tokens)])
					mu.Lock()
					defer mu.Unlock()
					if err != nil && firstErr == nil {
						firstErr = err
					}
					sessions[w][k] = id
				})
			}
		}
		wg.Wait()
		if firstErr != nil {
			return nil, fmt.Errorf("%s: create sessions: %w", t.Name, firstErr)
		}
	}
	out := make([]turnResult, len(clients)*turns)
	var wg sync.WaitGroup
	for w, hc := range clients {
		wg.Go(func() {
			if jitter > 0 {
				select {
				case <-time.After(rand.N(jitter)):
				case <-ctx.Done():
					return
				}
			}
			for k := range turns {
				if t.direct {
					out[w*turns+k] = directTurn(ctx, hc, t.Base, content)
				} else {
					out[w*turns+k] = streamTurn(ctx, hc, t.Base, t.tokens[w%len(t.tokens)], sessions[w][k], content, nil)
				}
			}
		})
	}
	wg.Wait()
	return out, ctx.Err()
}

func (r *ttftReport) print(w io.Writer) {
	fmt.Fprintf(w, "time to first token, %d concurrent streams per side, %d rounds × %d turns per stream (load avg %s → %s)\n",
		r.Streams, r.Rounds, r.Turns, r.Load[0], r.Load[1])
	fmt.Fprintf(w, "%-10s %6s %5s %9s %9s %9s %9s %12s\n", "side", "turns", "fail", "p50 ms", "p90 ms", "p99 ms", "max ms", "turn p50 ms")
	for _, t := range r.Targets {
		d := r.TTFT[t.Name]
		fmt.Fprintf(w, "%-10s %6d %5d %9.3f %9.3f %9.3f %9.3f %12.1f\n", t.Name, d.N, r.Failures[t.Name], d.P50, d.P90, d.P99, d.Max, r.Turn[t.Name].P50)
	}
	fmt.Fprintf(w, "where the time to the first token went (medians, ms): to the model's first chunk (by its clock), and back\n")
	for _, t := range r.Targets {
		ph := r.Phases[t.Name]
		fmt.Fprintf(w, "%-10s to model %7.3f  back %7.3f", t.Name, ph["to_model"], ph["back"])
		if !t.direct {
			fmt.Fprintf(w, "  (message event %.3f, memory event %.3f)", ph["message"], ph["memory"])
		}
		fmt.Fprintln(w)
	}
	for _, t := range r.Targets[1:] {
		fmt.Fprintf(w, "overhead %s: %+.3f ms median TTFT over direct (median of per-round differences %+.3f ms; round medians %s vs direct %s)\n",
			t.Name, r.Overhead[t.Name], r.RoundDiff[t.Name], fmtMs(r.RoundP50[t.Name]), fmtMs(r.RoundP50["direct"]))
	}
	for name, e := range r.FirstErr {
		fmt.Fprintf(w, "first error of %s: %s\n", name, e)
	}
}

func fmtMs(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return "[" + strings.Join(parts, " ") + "]"
}
