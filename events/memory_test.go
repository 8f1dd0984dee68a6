package events

import (
	"context"
	"testing"

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
