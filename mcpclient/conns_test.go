package mcpclient_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/idflow/idflow/mcpclient"
)

// TestCallsReuseConnections: one user's calls in flight at once, round
// after round, reuse the connections of the first round. With net/http's
// default of 2 idle connections per host, every call past the second
// dialed (on TLS: shook hands) anew and left a socket in TIME_WAIT: 8 + 6
// per later round. A few extra dials are allowed: a call's result can reach
// its caller just before its connection is back in the idle pool, and the
// client's own notification stream may open one late.
func TestCallsReuseConnections(t *testing.T) {
	t.Parallel()
	const concurrent, rounds, slack = 8, 4, 4
	arrived := make(chan struct{}, concurrent)
	var mu sync.Mutex
	gate := make(chan struct{})
	server := mcp.NewServer(&mcp.Implementation{Name: "gate", Version: "1"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "wait", Description: "Answers once the round is in flight."},
		func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			mu.Lock()
			g := gate
			mu.Unlock()
			arrived <- struct{}{}
			select {
			case <-g:
			case <-ctx.Done():
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil, nil
		})
	var dialed atomic.Int64
	srv := httptest.NewUnstartedServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dialed.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)

	s := servers(t, assertionFile(assertionServer("gate", srv.URL)), mcpclient.Deps{Signer: newSigner(t, "https://idflow.example")})
	wait := toolsOf(t, s, alice)["gate__wait"] // sets up alice's session
	setUp := dialed.Load()
	for round := range rounds {
		var wg sync.WaitGroup
		errs := make(chan error, concurrent)
		for range concurrent {
			wg.Go(func() {
				_, err := run(t.Context(), t, wait, alice, `{}`)
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
	if n := dialed.Load(); n > setUp+concurrent+slack {
		t.Fatalf("%d connections (%d to set up the session) for %d rounds of %d concurrent calls, want at most %d",
			n, setUp, rounds, concurrent, setUp+concurrent+slack)
	}
}
