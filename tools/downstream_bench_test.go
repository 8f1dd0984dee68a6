package tools_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/mcpclient"
	"github.com/idflow/idflow/tools"
)

// BenchmarkDownstreamToolCall is an agent turn's tool call of a downstream
// MCP server — the catalog (policy, lookup, identity arguments stripped,
// bounds), the user's downstream session and its assertion, the go-sdk
// client, the audit write on SQLite — side by side with the same call made
// to the same server directly by a go-sdk client, over loopback, in one
// run (docs/BENCHMARKS.md, "Agent runtime"):
//
//	go test ./tools -run '^$' -bench BenchmarkDownstreamToolCall -count 6
//
// The ratio of the two is what idflow adds to a tool call it makes itself;
// a call through /mcp adds the MCP server hop in front of it. The catalog
// is called as an agent turn calls it (idflow.WithBackgroundAudits): the
// call's audit write runs beside what follows — in a turn, the next model
// call — so it is waited for after the timed call, before the next direct
// one starts; audited-p50 is the call and its write together, the cost of
// a call whose caller waits for the write (/mcp, a workflow step).
func BenchmarkDownstreamToolCall(b *testing.B) {
	server := mcp.NewServer(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "echo", Description: "Answers its text."},
		func(_ context.Context, _ *mcp.CallToolRequest, in struct {
			Text string `json:"text"`
		}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
		})
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil))
	b.Cleanup(srv.Close)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	signer, err := auth.NewSigner(key, "https://idflow.example")
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := mcpclient.Parse(fmt.Appendf(nil, `{"servers": [{"name": "bench", "url": %q, "auth": {"type": "assertion"}}]}`, srv.URL))
	if err != nil {
		b.Fatal(err)
	}
	downstream, err := mcpclient.New(cfg, mcpclient.Deps{Signer: signer})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = downstream.Close() })
	// The catalog as serve builds it: the downstream servers its one source.
	r := newRig(b, `{}`, tools.Config{})
	if r.catalog, err = tools.New(tools.Config{}, tools.Deps{Svc: r.svc, Sources: []tools.Source{downstream}}); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	args := json.RawMessage(`{"text":"hello"}`)

	client := mcp.NewClient(&mcp.Implementation{Name: "direct", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: srv.URL}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer cs.Close()
	call := idflow.ToolCall{Name: "bench__echo", Arguments: args}
	if res := r.catalog.CallTool(ctx, alice, call, nil); !res.OK {
		b.Fatalf("warm-up call: %s", res.Content)
	}
	// The two calls alternate, each timed on its own, so that both see the
	// same load.
	var direct, catalog, audited []time.Duration
	for b.Loop() {
		start := time.Now()
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: args})
		if err != nil || res.IsError {
			b.Fatalf("direct call: %v %+v", err, res)
		}
		mid := time.Now()
		turn, audits := idflow.WithBackgroundAudits(ctx)
		if res := r.catalog.CallTool(turn, alice, call, nil); !res.OK {
			b.Fatalf("call: %s", res.Content)
		}
		answered := time.Now()
		audits.Wait()
		direct = append(direct, mid.Sub(start))
		catalog, audited = append(catalog, answered.Sub(mid)), append(audited, time.Since(mid))
	}
	// Medians: one call stalled by the shared machine does not move them.
	d, c, a := median(direct), median(catalog), median(audited)
	b.ReportMetric(float64(d.Nanoseconds()), "direct-p50-ns")
	b.ReportMetric(float64(c.Nanoseconds()), "catalog-p50-ns")
	b.ReportMetric(float64(a.Nanoseconds()), "audited-p50-ns")
	b.ReportMetric(float64(c)/float64(d), "ratio")
	b.ReportMetric(float64(a)/float64(d), "audited-ratio")
}

func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}
