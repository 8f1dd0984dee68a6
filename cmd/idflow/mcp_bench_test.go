package main

import (
	"fmt"
	"testing"
)

// BenchmarkMCPToolsCall measures MCP tools/call through the whole stack —
// HTTP, bearer verification (cached), the session-owner check, the go-sdk
// Streamable HTTP transport, the tool, the store and the audit write every
// call makes — on one reused session, calls in parallel:
//
//	go test ./cmd/idflow -run '^$' -bench BenchmarkMCPToolsCall -benchtime 5s -count 5
//
// calls/s is the figure to read; ns/op is its inverse per parallel call.
func BenchmarkMCPToolsCall(b *testing.B) {
	s := mcpStart(b, map[string]string{"IDFLOW_LOG_LEVEL": "error"})
	cs, _ := mcpConnect(b, s.URL, s.token(b, "alice"))
	for i := range 50 {
		mcpCall(b, cs, "add_fact", map[string]any{"content": fmt.Sprintf("benchmark fact %d about the quarterly roadmap", i)})
	}
	for _, tc := range []struct {
		tool string
		args map[string]any
	}{
		{"whoami", nil},
		{"search_memory", map[string]any{"query": "quarterly roadmap", "limit": 10}},
	} {
		b.Run(tc.tool, func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					res, err := mcpTryCall(cs, tc.tool, tc.args)
					if err != nil || res.IsError {
						b.Errorf("%s: %v %s", tc.tool, err, res.Text)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
		})
	}
}
