package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/cache"
	"github.com/idflow/idflow/events"
	"github.com/idflow/idflow/files"
	"github.com/idflow/idflow/llm"
	"github.com/idflow/idflow/runner"
	"github.com/idflow/idflow/service"
	"github.com/idflow/idflow/tools"
)

// BenchmarkRunsPerSecond starts runs of a one-step workflow (tool whoami)
// on the embedded store and River exactly as `serve` wires them
// (openSQLite, sqliteRunner, riverConfig), from many goroutines at once,
// and measures start → succeeded. runs/s is the throughput; p50/p99 the
// time from Start to the run.completed event.
func BenchmarkRunsPerSecond(b *testing.B) {
	for _, parallelism := range []int{1, 4, 16} {
		// b.RunParallel runs parallelism × GOMAXPROCS goroutines.
		b.Run(fmt.Sprintf("goroutines-%d", parallelism*runtime.GOMAXPROCS(0)), func(b *testing.B) {
			ctx := context.Background()
			log := slog.New(slog.DiscardHandler)
			// One user may use every worker: the benchmark measures the
			// runner, not the per-user cap (TestRunsAreFairPerUser).
			cfg := &config{DataDir: b.TempDir(), runTimeout: 5 * time.Minute, runsPerUser: riverWorkers}
			db, closeDB, err := openSQLite(ctx, cfg, filepath.Join(cfg.DataDir, "idflow.db"), log)
			if err != nil {
				b.Fatal(err)
			}
			defer closeDB()
			blobs, err := files.New(filepath.Join(cfg.DataDir, "files"))
			if err != nil {
				b.Fatal(err)
			}
			svc := service.New(service.Config{}, service.Deps{Store: db, Blobs: blobs, Cache: cache.NewScoped(cache.NewMemory(10000), 5*time.Minute), Model: llm.Echo{}, Log: log})
			bus := events.NewMemory(0)
			catalog, err := tools.New(tools.Config{}, tools.Deps{Svc: svc, Log: log})
			if err != nil {
				b.Fatal(err)
			}
			ex := runner.NewExecutor(svc, db, bus, catalog, log)
			runs, client, err := sqliteRunner(cfg, db, ex, log)
			if err != nil {
				b.Fatal(err)
			}
			if err := client.Start(ctx); err != nil {
				b.Fatal(err)
			}
			defer func() {
				sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = client.Stop(sctx)
			}()
			alice := authtest.User("alice", "t-one")
			wf, err := svc.CreateWorkflow(ctx, alice, "bench", idflow.Definition{Steps: []idflow.Step{{ID: "who", Type: idflow.StepTool, Tool: "whoami"}}})
			if err != nil {
				b.Fatal(err)
			}

			var mu sync.Mutex
			var lat []time.Duration
			b.SetParallelism(parallelism)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					t0 := time.Now()
					run, err := runs.Start(ctx, alice, wf.ID, nil, 0)
					if err != nil {
						b.Error(err)
						return
					}
					if status := waitRunEnd(ctx, db, bus, alice, run.ID); status != idflow.RunSucceeded {
						b.Errorf("run %s: %s", run.ID, status)
						return
					}
					d := time.Since(t0)
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}
			})
			elapsed := time.Since(start)
			b.StopTimer()
			if len(lat) == 0 {
				return
			}
			slices.Sort(lat)
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "runs/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// waitRunEnd waits for a run to end, through the event bus, and answers
// its final status.
func waitRunEnd(ctx context.Context, store idflow.RunStore, bus idflow.EventBus, p idflow.Principal, runID string) string {
	sub, err := bus.Subscribe(ctx, p, runID)
	if err != nil {
		return err.Error()
	}
	defer sub.Close()
	// Subscribed first, then checked: an end between the two is not missed.
	if run, err := store.GetRun(ctx, p, runID); err != nil || run.Terminal() {
		return run.Status
	}
	timeout := time.After(time.Minute)
	for {
		select {
		case e, ok := <-sub.Events():
			if !ok {
				run, _ := store.GetRun(ctx, p, runID)
				return run.Status
			}
			if e.Terminal() {
				run, _ := store.GetRun(ctx, p, runID)
				return run.Status
			}
		case <-timeout:
			return "timeout"
		}
	}
}
