package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/idflow/idflow/internal/testsvc"
)

// The official MCP conformance suite (npm @modelcontextprotocol/conformance,
// locked in testdata/mcpconformance) runs its server scenarios against /mcp.
// Its scenarios are of two kinds: those that test the protocol and the
// transport, which apply to any server and must pass, and those that call
// the suite's reference tools, resources and prompts (test_simple_text,
// test_prompt_with_arguments, …), which idflow does not have. docs/MCP.md
// lists both; every scenario the suite knows must be in one of the lists,
// so a new version of the suite cannot add one unnoticed.

// mcpConformanceApplies are the scenarios that must pass: no check FAILURE,
// and the named checks SUCCESS.
var mcpConformanceApplies = map[string][]string{
	"server-initialize":           {"server-initialize"},
	"ping":                        {"ping"},
	"logging-set-level":           {"logging-set-level"},
	"tools-list":                  {"tools-list"},
	"resources-list":              {"resources-list"}, // an empty list
	"prompts-list":                {"prompts-list"},   // an empty list
	"server-sse-multiple-streams": {"server-accepts-multiple-post-streams", "server-sse-streams-functional"},
	"dns-rebinding-protection":    {"localhost-host-rebinding-rejected", "localhost-host-valid-accepted"},
}

// mcpConformanceSkipped are the scenarios that need what idflow does not
// have, with the reason.
var mcpConformanceSkipped = map[string]string{
	"completion-complete":           "needs the reference prompt test_prompt_with_arguments (idflow has no prompts)",
	"tools-call-simple-text":        "needs the reference tool test_simple_text",
	"tools-call-image":              "needs the reference tool test_image_content",
	"tools-call-audio":              "needs the reference tool test_audio_content",
	"tools-call-embedded-resource":  "needs the reference tool test_embedded_resource",
	"tools-call-mixed-content":      "needs the reference tool test_multiple_content_types",
	"tools-call-with-logging":       "needs the reference tool test_tool_with_logging",
	"tools-call-error":              "needs the reference tool test_error_handling",
	"tools-call-with-progress":      "needs the reference tool test_tool_with_progress",
	"tools-call-sampling":           "needs the reference tool test_sampling",
	"tools-call-elicitation":        "needs the reference tool test_elicitation",
	"json-schema-2020-12":           "needs the reference tool json_schema_2020_12_tool",
	"elicitation-sep1034-defaults":  "needs the reference tool test_elicitation_sep1034_defaults",
	"elicitation-sep1330-enums":     "needs the reference tool test_elicitation_sep1330_enums",
	"server-sse-polling":            "needs the reference tool test_reconnection, and is pending in the suite (TestMCPSSEPrimingAndRetry covers priming and retry)",
	"resources-read-text":           "idflow has no resources",
	"resources-read-binary":         "idflow has no resources",
	"resources-templates-read":      "idflow has no resources",
	"resources-subscribe":           "idflow has no resources",
	"resources-unsubscribe":         "idflow has no resources",
	"prompts-get-simple":            "idflow has no prompts",
	"prompts-get-with-args":         "idflow has no prompts",
	"prompts-get-embedded-resource": "idflow has no prompts",
	"prompts-get-with-image":        "idflow has no prompts",
}

// conformanceCheck is one entry of the suite's checks.json.
type conformanceCheck struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Status       string `json:"status"`
	ErrorMessage string `json:"errorMessage"`
}

// node22 returns a Node.js of version 22 or later: the one on PATH, else
// the one .ci/run keeps in its cache; without either the test ends through
// testsvc.Unavailable.
func node22(t *testing.T) string {
	t.Helper()
	candidates := []string{testsvc.Node(t)}
	cache := os.Getenv("IDFLOW_CI_CACHE")
	if cache == "" {
		if dir, err := os.UserCacheDir(); err == nil {
			cache = filepath.Join(dir, "idflow-ci")
		}
	}
	if cache != "" {
		found, _ := filepath.Glob(filepath.Join(cache, "node-v*", "bin", "node"))
		sort.Sort(sort.Reverse(sort.StringSlice(found)))
		candidates = append(candidates, found...)
	}
	for _, node := range candidates {
		out, err := exec.Command(node, "-p", "process.versions.node").Output()
		if err != nil {
			continue
		}
		major, err := strconv.Atoi(strings.SplitN(strings.TrimSpace(string(out)), ".", 2)[0])
		if err == nil && major >= 22 {
			return node
		}
	}
	testsvc.Unavailable(t, "the MCP conformance suite needs Node.js 22 or later (.ci/run fetches it into %s)", cache)
	return ""
}

// TestMCPConformance runs the official MCP conformance suite's server
// scenarios against idflow in production mode. The suite cannot send an
// Authorization header, so it talks to a small reverse proxy that adds
// alice's token — the way a gateway in front of idflow would. The proxy's
// address is idflow's public URL, so its origin is the one the
// dns-rebinding-protection scenario must see accepted.
func TestMCPConformance(t *testing.T) {
	t.Parallel()
	node := node22(t)
	dir := testsvc.RepoDir(t, "testdata/mcpconformance")
	testsvc.NPMInstall(t, dir)
	cli := filepath.Join(dir, "node_modules", "@modelcontextprotocol", "conformance", "dist", "index.js")

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	public := "http://" + l.Addr().String()
	s := mcpStart(t, map[string]string{"IDFLOW_PUBLIC_URL": public})
	target, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	token := s.token(t, "alice")
	proxy := &http.Server{Handler: &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			if pr.Out.Header.Get("Authorization") == "" {
				pr.Out.Header.Set("Authorization", "Bearer "+token)
			}
		},
		FlushInterval: -1,
	}}
	go func() { _ = proxy.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = proxy.Shutdown(ctx)
	})

	run := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, append([]string{cli}, args...)...)
		cmd.Dir = t.TempDir()
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	// Every scenario the suite knows is classified.
	out, err := run("list", "--server")
	if err != nil {
		t.Fatalf("conformance list: %v\n%s", err, out)
	}
	var listed []string
	for _, line := range strings.Split(out, "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "- "); ok {
			listed = append(listed, strings.Fields(name)[0])
		}
	}
	if len(listed) == 0 {
		t.Fatalf("conformance list printed no scenario:\n%s", out)
	}
	for _, name := range listed {
		_, applies := mcpConformanceApplies[name]
		_, skipped := mcpConformanceSkipped[name]
		if !applies && !skipped {
			t.Errorf("the suite's scenario %s is neither run nor skipped: classify it here and in docs/MCP.md", name)
		}
	}
	for name := range mcpConformanceApplies {
		if !slices.Contains(listed, name) {
			t.Errorf("the suite no longer has the scenario %s", name)
		}
	}

	for _, name := range listed {
		t.Run(name, func(t *testing.T) {
			want, applies := mcpConformanceApplies[name]
			if !applies {
				t.Skip(mcpConformanceSkipped[name])
			}
			outDir := t.TempDir()
			out, runErr := run("server", "--url", public+"/mcp", "--scenario", name, "-o", outDir)
			found, _ := filepath.Glob(filepath.Join(outDir, "*", "checks.json"))
			if len(found) != 1 {
				t.Fatalf("scenario %s wrote %d checks.json (%v):\n%s", name, len(found), runErr, out)
			}
			b, err := os.ReadFile(found[0])
			if err != nil {
				t.Fatal(err)
			}
			var checks []conformanceCheck
			if err := json.Unmarshal(b, &checks); err != nil {
				t.Fatalf("checks.json: %v", err)
			}
			status := map[string]string{}
			for _, c := range checks {
				status[c.ID] = c.Status
				if c.Status == "FAILURE" {
					t.Errorf("%s: check %s (%s) failed: %s", name, c.ID, c.Name, c.ErrorMessage)
				}
			}
			for _, id := range want {
				if status[id] != "SUCCESS" {
					t.Errorf("%s: check %s is %q; want SUCCESS", name, id, status[id])
				}
			}
			if runErr != nil {
				t.Errorf("conformance server --scenario %s: %v", name, runErr)
			}
			if t.Failed() {
				t.Logf("suite output:\n%s", out)
			}
		})
	}
}
