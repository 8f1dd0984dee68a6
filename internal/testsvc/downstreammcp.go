package testsvc

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// DownstreamMCP is a running testdata/downstreammcp/server.mjs: an MCP
// server on the official TypeScript SDK that trusts only assertions signed
// by the keys of an idflow JWKS.
type DownstreamMCP struct {
	// URL is its MCP endpoint, http://127.0.0.1:<port>/mcp: the aud it
	// requires.
	URL  string
	base string
}

// DownstreamMCPStats is what the server counted.
type DownstreamMCPStats struct {
	Refused  int            `json:"refused"`  // requests without a valid assertion
	Foreign  int            `json:"foreign"`  // requests on a session of another sub
	Sessions map[string]int `json:"sessions"` // sub → sessions opened
	Calls    map[string]int `json:"calls"`    // sub → tool calls
	Open     int            `json:"open"`     // live sessions
}

// StartDownstreamMCP installs (NPMInstall) and starts the server, trusting
// assertions with iss = issuer signed by a key of jwksURL. Without node or
// npm the test ends through Unavailable.
func StartDownstreamMCP(t testing.TB, issuer, jwksURL string) *DownstreamMCP {
	t.Helper()
	node := Node(t)
	dir := RepoDir(t, "testdata/downstreammcp")
	NPMInstall(t, dir)
	cmd := exec.Command(node, dir+"/server.mjs", "--port", "0", "--issuer", issuer, "--jwks", jwksURL)
	cmd.Dir = t.TempDir()
	stdout, pw, err := os.Pipe()
	if err != nil {
		t.Fatalf("downstream mcp: %v", err)
	}
	cmd.Stdout = pw
	p, err := startProcess(t, "downstream mcp server", cmd, syscall.SIGTERM, nil)
	pw.Close() // the child holds its own copy
	if err != nil {
		stdout.Close()
		t.Fatalf("downstream mcp: %v", err)
	}
	// The server picks its port (0) and announces it: no port race.
	lines := make(chan string, 1)
	go func() {
		defer stdout.Close()
		sc := bufio.NewScanner(stdout)
		announced := false
		for sc.Scan() {
			line := sc.Text()
			if !announced && strings.HasPrefix(line, "LISTENING ") {
				announced = true
				lines <- strings.TrimPrefix(line, "LISTENING ")
				continue
			}
			fmt.Fprintln(p.output, line)
		}
	}()
	var u string
	select {
	case u = <-lines:
	case <-p.done:
		t.Fatalf("downstream mcp exited before it was ready (%v): %s", p.err, lastLines(p.output.String(), 20))
	case <-time.After(startTimeout):
		t.Fatalf("downstream mcp did not announce itself within %s: %s", startTimeout, lastLines(p.output.String(), 20))
	}
	d := &DownstreamMCP{URL: u, base: strings.TrimSuffix(u, "/mcp")}
	if err := p.waitReady(func() error { _, err := d.stats(); return err }); err != nil {
		t.Fatalf("downstream mcp: %v", err)
	}
	return d
}

func (d *DownstreamMCP) stats() (DownstreamMCPStats, error) {
	var s DownstreamMCPStats
	resp, err := http.Get(d.base + "/test/stats")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("stats: status %d", resp.StatusCode)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// Stats answers what the server counted so far.
func (d *DownstreamMCP) Stats(t testing.TB) DownstreamMCPStats {
	t.Helper()
	s, err := d.stats()
	if err != nil {
		t.Fatalf("downstream mcp stats: %v", err)
	}
	return s
}

// DropSessions ends every session, as a restart of the server would, and
// answers how many there were.
func (d *DownstreamMCP) DropSessions(t testing.TB) int {
	t.Helper()
	resp, err := http.Post(d.base+"/test/drop-sessions", "application/json", nil)
	if err != nil {
		t.Fatalf("drop sessions: %v", err)
	}
	defer resp.Body.Close()
	var out struct {
		Dropped int `json:"dropped"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("drop sessions: %v", err)
	}
	return out.Dropped
}
