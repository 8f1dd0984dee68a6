package events

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth/authtest"
)

func TestMemoryDeliversOnlyToTheOwnersRun(t *testing.T) {
	bus := NewMemory(8)
	ctx := context.Background()
	alice, bob := authtest.User("alice", "t-one"), authtest.User("bob", "t-one")
	aSub, err := bus.Subscribe(ctx, alice, "run_1")
	if err != nil {
		t.Fatal(err)
	}
	// bob subscribes to the same run id: he must not see alice's events.
	bSub, err := bus.Subscribe(ctx, bob, "run_1")
	if err != nil {
		t.Fatal(err)
	}
	_ = bus.Publish(ctx, idflow.Event{RunID: "run_1", UserID: "alice", Seq: 1, Type: idflow.EventRunStarted})
	got := <-aSub.Events()
	if got.UserID != "alice" || got.Seq != 1 {
		t.Fatalf("alice got %+v", got)
	}
	select {
	case e := <-bSub.Events():
		t.Fatalf("bob received alice's event %+v", e)
	default:
	}
}

func TestMemoryRefusesAppPrincipals(t *testing.T) {
	if _, err := NewMemory(1).Subscribe(context.Background(), authtest.App("svc"), "run_1"); idflow.ErrorCode(err) != idflow.EFORBIDDEN {
		t.Fatalf("err = %v, want forbidden", err)
	}
}

func TestTopicCannotBeForged(t *testing.T) {
	// A user id containing the separator must not reach another topic.
	if Topic("a/b", "c") == Topic("a", "b/c") {
		t.Fatal("topics collide")
	}
}

func TestSlowSubscriberIsDroppedWithoutBlockingOthers(t *testing.T) {
	bus := NewMemory(2)
	ctx := context.Background()
	alice := authtest.User("alice", "t-one")
	slow, _ := bus.Subscribe(ctx, alice, "run_1")
	fast, _ := bus.Subscribe(ctx, alice, "run_1")
	for i := int64(1); i <= 5; i++ {
		_ = bus.Publish(ctx, idflow.Event{RunID: "run_1", UserID: "alice", Seq: i})
		<-fast.Events() // the fast one keeps up
	}
	if !slow.Dropped() {
		t.Fatal("slow subscriber not dropped")
	}
	if fast.Dropped() {
		t.Fatal("fast subscriber dropped")
	}
	n := 0
	for range slow.Events() { // closed after what was buffered
		n++
	}
	if n != 2 {
		t.Fatalf("slow subscriber kept %d events, want its buffer of 2", n)
	}
	if got := bus.Subscribers(Topic("alice", "run_1")); got != 1 {
		t.Fatalf("subscribers = %d, want 1", got)
	}
}

func TestSubscriptionEndsWithContext(t *testing.T) {
	bus := NewMemory(2)
	ctx, cancel := context.WithCancel(context.Background())
	sub, _ := bus.Subscribe(ctx, authtest.User("alice", "t-one"), "run_1")
	cancel()
	for range sub.Events() {
	}
	if got := bus.Subscribers(Topic("alice", "run_1")); got != 0 {
		t.Fatalf("subscribers = %d after cancel", got)
	}
}

// publishN publishes alice's events seq from..to on run_1.
func publishN(bus *Memory, from, to int64) {
	for i := from; i <= to; i++ {
		_ = bus.Publish(context.Background(), idflow.Event{RunID: "run_1", UserID: "alice", Seq: i, Type: idflow.EventStepOutput})
	}
}

// readAll reads n events, or until the channel closes, and checks that
// they are seq 1..len in order.
func readSeq(t *testing.T, sub idflow.Subscription, n int) int {
	t.Helper()
	got := 0
	for got < n {
		e, ok := <-sub.Events()
		if !ok {
			break
		}
		got++
		if e.Seq != int64(got) {
			t.Fatalf("event %d has seq %d", got, e.Seq)
		}
	}
	return got
}

func TestBufferBeyondTheChannelIsKeptInOrder(t *testing.T) {
	bus := NewMemory(DefaultBuffer)
	sub, _ := bus.Subscribe(context.Background(), authtest.User("alice", "t-one"), "run_1")
	defer sub.Close()
	publishN(bus, 1, DefaultBuffer) // nobody reads: all of it waits
	if sub.Dropped() {
		t.Fatal("dropped within its buffer")
	}
	if got := readSeq(t, sub, DefaultBuffer); got != DefaultBuffer {
		t.Fatalf("read %d events; want %d", got, DefaultBuffer)
	}
	// Interleaved publishing and reading stays in order.
	for i := int64(1); i <= 1000; i++ {
		publishN(bus, DefaultBuffer+i, DefaultBuffer+i)
		if i%3 == 0 {
			for j := 0; j < 3; j++ {
				if e := <-sub.Events(); e.Seq != DefaultBuffer+i-2+int64(j) {
					t.Fatalf("got seq %d; want %d", e.Seq, DefaultBuffer+i-2+int64(j))
				}
			}
		}
	}
	if sub.Dropped() {
		t.Fatal("a subscriber that keeps up was dropped")
	}
}

func TestOverflowDropsAfterTheWholeBuffer(t *testing.T) {
	bus := NewMemory(DefaultBuffer)
	sub, _ := bus.Subscribe(context.Background(), authtest.User("alice", "t-one"), "run_1")
	defer sub.Close()
	publishN(bus, 1, DefaultBuffer+50)
	if !sub.Dropped() {
		t.Fatal("not dropped after overflowing its buffer")
	}
	// What was buffered is delivered in order, then the channel closes.
	if got := readSeq(t, sub, 1<<20); got != DefaultBuffer {
		t.Fatalf("a dropped subscriber received %d events; want its buffer of %d", got, DefaultBuffer)
	}
	if n := bus.Subscribers(Topic("alice", "run_1")); n != 0 {
		t.Fatalf("%d subscribers after the drop", n)
	}
}

func TestCloseStopsAPumpBlockedOnAFullChannel(t *testing.T) {
	bus := NewMemory(DefaultBuffer)
	before := runtime.NumGoroutine()
	sub, _ := bus.Subscribe(context.Background(), authtest.User("alice", "t-one"), "run_1")
	publishN(bus, 1, 100) // the pump blocks: nobody reads
	sub.Close()
	for range sub.Events() { // closes; what is left is discarded
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Close; %d before", runtime.NumGoroutine(), before)
		}
		runtime.Gosched()
	}
	publishN(bus, 101, 101) // publishing to a closed topic is harmless
}

func TestConcurrentPublishReadClose(t *testing.T) {
	bus := NewMemory(64)
	alice := authtest.User("alice", "t-one")
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		sub, _ := bus.Subscribe(ctx, alice, "run_1")
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cancel()
			var last int64
			for e := range sub.Events() {
				if e.Seq <= last {
					t.Errorf("seq %d after %d", e.Seq, last)
				}
				last = e.Seq
				if i%4 == 0 && e.Seq > int64(i*50) {
					return // leave early: ctx ends the subscription
				}
			}
		}()
	}
	for i := int64(1); i <= 5000; i++ {
		publishN(bus, i, i)
	}
	// Whoever is still subscribed is closed now.
	bus.mu.RLock()
	var subs []*subscription
	for s := range bus.topics[Topic("alice", "run_1")] {
		subs = append(subs, s)
	}
	bus.mu.RUnlock()
	for _, s := range subs {
		s.Close()
	}
	wg.Wait()
}

// TestIdleSubscriptionIsSmall guards the per-WebSocket cost: an idle
// subscriber holds a small channel, not its whole buffer.
func TestIdleSubscriptionIsSmall(t *testing.T) {
	bus := NewMemory(DefaultBuffer)
	alice := authtest.User("alice", "t-one")
	const n = 2000
	subs := make([]idflow.Subscription, 0, n)
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	for i := 0; i < n; i++ {
		s, _ := bus.Subscribe(context.Background(), alice, fmt.Sprintf("run_%d", i))
		subs = append(subs, s)
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	per := (int64(m1.HeapAlloc) - int64(m0.HeapAlloc)) / n
	t.Logf("%d bytes per idle subscription", per)
	if per > 4<<10 {
		t.Fatalf("%d bytes per idle subscription; want at most 4 KiB", per)
	}
	for _, s := range subs {
		s.Close()
	}
}
