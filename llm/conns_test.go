package llm_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/idflow/idflow/llm"
)

// TestOpenAIReusesConnections: turns streamed at once, round after round,
// reuse the connections of the first round. With net/http's default of 2
// idle connections per host, every turn past the second dialed (and, on
// TLS, shook hands) anew, and left a socket in TIME_WAIT: 8 + 6 per later
// round. A few extra dials are allowed: a turn can end for its caller just
// before its connection is back in the idle pool.
func TestOpenAIReusesConnections(t *testing.T) {
	const concurrent, rounds, slack = 8, 4, 4
	var dialed atomic.Int64
	arrived := make(chan struct{}, concurrent)
	var mu sync.Mutex
	gate := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		g := gate
		mu.Unlock()
		arrived <- struct{}{}
		<-g // answer once the whole round is in flight, so that it needs concurrent connections
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"hi"},"finish_reason":null}]}`+"\n\n")
		fmt.Fprint(w, `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`+"\n\n")
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dialed.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c, err := llm.NewOpenAI(llm.OpenAIConfig{BaseURL: srv.URL + "/v1", Model: "m", UserKey: testKey, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	for round := range rounds {
		var wg sync.WaitGroup
		errs := make(chan error, concurrent)
		for range concurrent {
			wg.Go(func() {
				_, err := c.Chat(t.Context(), alice, ask("hi"), func(string) error { return nil })
				errs <- err
			})
		}
		for range concurrent {
			<-arrived
		}
		mu.Lock()
		close(gate)
		gate = make(chan struct{})
		mu.Unlock()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	if n := dialed.Load(); n > concurrent+slack {
		t.Fatalf("%d connections for %d rounds of %d concurrent turns, want at most %d (one per concurrent turn, reused)", n, rounds, concurrent, concurrent+slack)
	}
}
