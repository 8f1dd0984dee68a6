package events

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

// BenchmarkFanout publishes one event at a time to 1,000 subscribers of one
// run, each receiving on its own goroutine as a WebSocket writer does, and
// reports the publish → receive latency over every receipt. ns/op is the
// time until all 1,000 have the event.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1000} {
		b.Run(strconv.Itoa(n)+"-subscribers", func(b *testing.B) {
			bus := NewMemory(DefaultBuffer)
			alice := authtest.User("alice", "t-one")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var got sync.WaitGroup
			lat := make([][]time.Duration, n)
			var ready sync.WaitGroup
			for i := range n {
				sub, err := bus.Subscribe(ctx, alice, "run_1")
				if err != nil {
					b.Fatal(err)
				}
				lat[i] = make([]time.Duration, 0, b.N)
				ready.Add(1)
				go func() {
					ready.Done()
					for e := range sub.Events() {
						lat[i] = append(lat[i], time.Since(e.At))
						got.Done()
					}
				}()
			}
			ready.Wait()
			ev := idflow.Event{RunID: "run_1", UserID: "alice", Type: idflow.EventStepOutput, Data: []byte(`{"reply":"hello"}`)}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				got.Add(n)
				ev.Seq, ev.At = int64(i+1), time.Now()
				if err := bus.Publish(ctx, ev); err != nil {
					b.Fatal(err)
				}
				got.Wait()
			}
			b.StopTimer()
			var all []time.Duration
			for _, l := range lat {
				all = append(all, l...)
			}
			if len(all) != n*b.N {
				b.Fatalf("%d receipts; want %d (a subscriber was dropped)", len(all), n*b.N)
			}
			slices.Sort(all)
			b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
		})
	}
}
