package httpapi

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/idflow/idflow"
)

func TestEventEncodingsAreSharedOnlyForTheSameEvent(t *testing.T) {
	c := &eventEncodings{m: map[eventKey][]byte{}}
	at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	alice := idflow.Event{RunID: "run_1", Seq: 7, Type: idflow.EventStepOutput, StepID: "s", UserID: "alice", Data: json.RawMessage(`{"a":1}`), At: at}
	bob := alice
	bob.UserID, bob.Data = "bob", json.RawMessage(`{"b":2}`)
	for _, e := range []idflow.Event{alice, bob, alice, bob} {
		got, err := c.encode(e)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(e)
		if !bytes.Equal(got, want) {
			t.Fatalf("encoding of %s's event: %s; want %s", e.UserID, got, want)
		}
	}
	if len(c.m) != 2 {
		t.Fatalf("%d cached encodings; want 2", len(c.m))
	}
	// Large events are encoded each time, not kept.
	big := alice
	big.Seq, big.Data = 8, json.RawMessage(`"`+strings.Repeat("x", eventJSONMaxBytes)+`"`)
	if _, err := c.encode(big); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.m[eventKey{"alice", "run_1", 8}]; ok {
		t.Fatal("a large encoding was cached")
	}
	// The cache stays bounded.
	for i := int64(0); i < 3*eventJSONEntries; i++ {
		e := alice
		e.Seq = 100 + i
		if _, err := c.encode(e); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.m) != eventJSONEntries {
		t.Fatalf("%d cached encodings; want at most %d", len(c.m), eventJSONEntries)
	}
}
