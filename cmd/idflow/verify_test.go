package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/devidp"
	"github.com/idflow/idflow/internal/testsvc"
	"github.com/idflow/idflow/verify"
)

// The self-test of `idflow verify` (docs/VERIFY.md): it must pass against
// idflow itself — production mode on SQLite, and PostgreSQL + Redis with
// two replicas behind nginx — and it must catch, and name, each of three
// deliberately broken builds.

// TestAllowVerifyConfig: IDFLOW_ALLOW_VERIFY is off in production unless
// set, on in --dev unless set to false, and refuses anything but a boolean.
func TestAllowVerifyConfig(t *testing.T) {
	for _, tc := range []struct {
		value string
		dev   bool
		want  bool
		bad   bool
	}{
		{"", false, false, false}, {"", true, true, false}, {"true", false, true, false},
		{"false", true, false, false}, {"1", false, true, false}, {"yes", false, false, true},
	} {
		var args []string
		if tc.dev {
			args = []string{"--dev"}
		}
		cfg, _, err := loadConfig("serve", args, envOf(map[string]string{"IDFLOW_ALLOW_VERIFY": tc.value}), io.Discard)
		switch {
		case tc.bad && (err == nil || !strings.Contains(err.Error(), "IDFLOW_ALLOW_VERIFY")):
			t.Errorf("IDFLOW_ALLOW_VERIFY=%q: %v; want refused", tc.value, err)
		case !tc.bad && err != nil:
			t.Errorf("IDFLOW_ALLOW_VERIFY=%q dev=%v: %v", tc.value, tc.dev, err)
		case !tc.bad && cfg.allowVerify != tc.want:
			t.Errorf("IDFLOW_ALLOW_VERIFY=%q dev=%v: %v; want %v", tc.value, tc.dev, cfg.allowVerify, tc.want)
		}
	}
}

// verifyTokens are the environment of `idflow verify` with tokens of a
// prodServer's callers: A alice and B bob (t-one), C carol (t-two).
func verifyTokens(t *testing.T, s *prodServer, admin string) map[string]string {
	env := map[string]string{
		"IDFLOW_VERIFY_USER_A_TOKEN":  s.Token(t, callerAlice),
		"IDFLOW_VERIFY_USER_B_TOKEN":  s.Token(t, callerBob),
		"IDFLOW_VERIFY_USER_C_TOKEN":  s.Token(t, callerCarol),
		"IDFLOW_VERIFY_APP_TOKEN":     s.Token(t, callerApp),
		"IDFLOW_VERIFY_EXPIRED_TOKEN": s.Token(t, callerExpired),
	}
	if admin != "" {
		env["IDFLOW_VERIFY_ADMIN_TOKEN"] = s.Token(t, admin)
	}
	return env
}

// verifyRun is one `idflow verify` in-process.
type verifyRun struct {
	err            error
	stdout, stderr string
	html, json     []byte
	rep            verify.Report
}

func runVerify(t *testing.T, server string, env map[string]string, args ...string) verifyRun {
	t.Helper()
	dir := t.TempDir()
	htmlPath, jsonPath := filepath.Join(dir, "report.html"), filepath.Join(dir, "report.json")
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	all := append([]string{"verify", "--server", server, "--rate", "1000", "--report", htmlPath, "--json", jsonPath}, args...)
	var r verifyRun
	r.err = run(ctx, all, envOf(env), &stdout, &stderr)
	r.stdout, r.stderr = stdout.String(), stderr.String()
	r.html, _ = os.ReadFile(htmlPath)
	r.json, _ = os.ReadFile(jsonPath)
	if len(r.json) > 0 {
		if err := json.Unmarshal(r.json, &r.rep); err != nil {
			t.Fatalf("the JSON report: %v", err)
		}
	}
	return r
}

// checkNoToken fails if any output holds a token, or any 16 characters of
// one.
func checkNoToken(t *testing.T, tokens []string, outputs map[string]string) {
	t.Helper()
	for name, out := range outputs {
		for _, tok := range tokens {
			for i := 0; i+16 <= len(tok); i += 8 {
				if strings.Contains(out, tok[i:i+16]) {
					t.Errorf("the %s holds a piece of a token (%d..%d)", name, i, i+16)
					break
				}
			}
		}
	}
}

// requireClean asserts a passing run that checked every channel.
func requireClean(t *testing.T, r verifyRun) {
	t.Helper()
	if r.err != nil || !r.rep.Passed {
		var failed []string
		for _, c := range r.rep.Checks {
			if c.Result == verify.Fail {
				failed = append(failed, c.Line())
			}
		}
		t.Fatalf("verify against a sound idflow: %v\n%s\n%s\n%s", r.err, strings.Join(failed, "\n"), r.stdout, lastLinesOf(r.stderr, 20))
	}
	byCat := map[string]verify.CategorySummary{}
	for _, s := range r.rep.Summary {
		byCat[s.Category] = s
	}
	for cat, least := range map[string]int{"controls": 10, "routes": 250, "filters": 20, "admin": 10, "websocket": 5, "mcp": 20, "agent": 12, "intact": 10} {
		if byCat[cat].Passed < least {
			t.Errorf("category %s: %d checks passed; want at least %d", cat, byCat[cat].Passed, least)
		}
	}
	// Every by-id route was tried by B and C and answered like a missing id.
	for _, target := range []string{"GET /api/v1/facts/{fact_id}", "DELETE /api/v1/apps/{app_id}", "POST /api/v1/sessions/{session_id}/messages", "GET /api/v1/documents/{document_id}/content"} {
		for _, who := range []string{"B", "C"} {
			if !slices.ContainsFunc(r.rep.Checks, func(c verify.Check) bool {
				return c.Target == target && c.Caller == who && c.Result == verify.Pass && c.Got == "404, the same as a missing id"
			}) {
				t.Errorf("no passed check of %s as %s", target, who)
			}
		}
	}
	if !strings.Contains(r.stdout, "PASS: no caller reached anything of another user's") {
		t.Errorf("the summary does not say PASS:\n%s", r.stdout)
	}
}

// verifyLeftovers lists alice's objects that hold the run's marker.
func verifyLeftovers(t *testing.T, s *prodServer, marker string) []string {
	t.Helper()
	var left []string
	for _, path := range []string{"/api/v1/apps", "/api/v1/agents", "/api/v1/sessions", "/api/v1/workflows", "/api/v1/documents", "/api/v1/facts"} {
		for _, raw := range s.listAll(t, callerAlice, path) {
			if strings.Contains(string(raw), marker) {
				left = append(left, path)
			}
		}
	}
	return left
}

// TestVerifyPassesOnSQLite: idflow verify against idflow in production
// mode on SQLite passes, with an admin of the other tenant, an app-only
// token and an expired token; it removes what it made; no output holds a
// token; and the server said, at start, that it allows verification.
func TestVerifyPassesOnSQLite(t *testing.T) {
	t.Parallel()
	s := startProdIdflow(t, map[string]string{"IDFLOW_ALLOW_VERIFY": "true", "IDFLOW_LOG_LEVEL": "warn"})
	if !strings.Contains(s.stderr.String(), "IDFLOW_ALLOW_VERIFY is on") {
		t.Errorf("the server did not log that it allows verification:\n%s", s.stderr.String())
	}
	env := verifyTokens(t, s, callerAdmin2)
	r := runVerify(t, s.URL, env)
	requireClean(t, r)
	if r.rep.Callers[len(r.rep.Callers)-1].Name != "expired" {
		t.Errorf("the expired token was not used: %+v", r.rep.Callers)
	}
	if left := verifyLeftovers(t, s, r.rep.Marker); len(left) > 0 {
		t.Errorf("the verifier left objects of alice's behind in %v", left)
	}
	var tokens []string
	for _, tok := range env {
		tokens = append(tokens, tok)
	}
	checkNoToken(t, tokens, map[string]string{"stdout": r.stdout, "stderr": r.stderr, "HTML report": string(r.html), "JSON report": string(r.json)})
}

// TestVerifyThroughAnAuthProxy: in front of idflow, a proxy that behaves
// like oauth2-proxy with --skip-jwt-bearer-tokens: a request without an
// Authorization header is sent to its sign-in (302), except the open
// health routes, so it also refuses a WebSocket whose token travels as
// the bearer.<token> subprotocol. The verifier still passes, opening every
// run socket with the token in the Authorization header, and says so.
func TestVerifyThroughAnAuthProxy(t *testing.T) {
	t.Parallel()
	s := startProdIdflow(t, map[string]string{"IDFLOW_ALLOW_VERIFY": "true"})
	upstream, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(upstream)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/readyz", r.URL.Path == "/healthz", strings.HasPrefix(r.URL.Path, "/.well-known/"):
		case r.Header.Get("Authorization") == "":
			http.Redirect(w, r, "/oauth2/start?rd="+url.QueryEscape(r.URL.Path), http.StatusFound)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	r := runVerify(t, proxy.URL, verifyTokens(t, s, callerAdmin2))
	requireClean(t, r)
	if !slices.ContainsFunc(r.rep.Notes, func(n string) bool { return strings.Contains(n, "Authorization header it opened") }) {
		t.Errorf("the report does not say the sockets carried the token in the Authorization header: %v", r.rep.Notes)
	}
}

// TestVerifyCleansUpWhenInterrupted: a run stopped in the middle (Ctrl-C,
// --timeout) still removes A's objects, and fails.
func TestVerifyCleansUpWhenInterrupted(t *testing.T) {
	t.Parallel()
	s := startProdIdflow(t, map[string]string{"IDFLOW_ALLOW_VERIFY": "true"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	routes := 0
	rep, err := verify.Run(ctx, verify.Config{Server: s.URL, Rate: verify.MaxRate,
		Tokens: verify.Tokens{A: s.Token(t, callerAlice), B: s.Token(t, callerBob), C: s.Token(t, callerCarol)},
		Progress: func(p verify.Progress) {
			if p.Phase == "routes" {
				if routes++; routes == 5 {
					cancel() // as Ctrl-C would
				}
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Passed || !slices.ContainsFunc(rep.Notes, func(n string) bool { return strings.HasPrefix(n, "Interrupted") }) {
		t.Errorf("an interrupted run: passed=%v, notes %v; want a failure that says it was interrupted", rep.Passed, rep.Notes)
	}
	if routes < 5 {
		t.Fatalf("the run stopped before the routes (%d route steps): nothing was interrupted", routes)
	}
	if left := verifyLeftovers(t, s, rep.Marker); len(left) > 0 {
		t.Errorf("an interrupted run left objects of alice's behind in %v", left)
	}
}

// TestVerifyRefuses: a server without IDFLOW_ALLOW_VERIFY is left alone
// (nothing is created), and so is a remote server without --yes.
func TestVerifyRefuses(t *testing.T) {
	t.Parallel()
	s := startProdIdflow(t, nil)
	resp, body := s.get(t, "/readyz", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"verify":"off"`) {
		t.Fatalf("/readyz without IDFLOW_ALLOW_VERIFY: %d %s; want verify off", resp.StatusCode, body)
	}
	r := runVerify(t, s.URL, verifyTokens(t, s, ""))
	if r.err == nil || !strings.Contains(r.err.Error(), "IDFLOW_ALLOW_VERIFY=true") {
		t.Fatalf("verify against a server that does not allow it: %v", r.err)
	}
	if n := len(s.listAll(t, callerAlice, "/api/v1/apps")) + len(s.listAll(t, callerAlice, "/api/v1/facts")); n != 0 {
		t.Fatalf("a refused verification created %d objects", n)
	}
	r = runVerify(t, "http://192.0.2.10:8080", verifyTokens(t, s, ""))
	if r.err == nil || !strings.Contains(r.err.Error(), "--yes") {
		t.Fatalf("verify against a remote server without --yes: %v", r.err)
	}
}

// TestVerifyPassesOnPostgresReplicas: idflow verify through nginx in front
// of two replicas on PostgreSQL and Redis passes, with an admin of A's own
// tenant (who may see A in the admin routes, never C).
func TestVerifyPassesOnPostgresReplicas(t *testing.T) {
	t.Parallel()
	nginxBin := testsvc.NginxPath(t)
	pg := testsvc.StartPostgres(t)
	db := pg.NewDatabase(t)
	redisAddr := testsvc.StartRedis(t)
	iss := authtest.NewIssuer(t)
	tokens := &prodServer{Issuer: iss, tokens: map[string]string{}} // mints the harness's tokens
	nginxPort := testsvc.FreePort(t)
	vaultKey, assertionKey := deployKeys(t)
	base := map[string]string{
		"IDFLOW_OIDC_ISSUER":          iss.Issuer(),
		"IDFLOW_OIDC_AUDIENCE":        iss.Audience(),
		"IDFLOW_OIDC_USER_CLAIM":      "oid",
		"IDFLOW_PUBLIC_URL":           "http://127.0.0.1:" + strconv.Itoa(nginxPort),
		"IDFLOW_DATABASE_URL":         db.AppURL,
		"IDFLOW_MIGRATE_DATABASE_URL": db.OwnerURL,
		"IDFLOW_CACHE_URL":            "redis://" + redisAddr + "/0",
		"IDFLOW_VAULT_KEY":            vaultKey,
		"IDFLOW_ASSERTION_KEY":        assertionKey,
		"IDFLOW_INTERNAL_CLIENTS":     testAppClientID,
		"IDFLOW_PLATFORM_ADMIN_ROLE":  testPlatformRole,
		"IDFLOW_ALLOW_VERIFY":         "true",
		"IDFLOW_LOG_LEVEL":            "warn",
	}
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"migrate"}, envOf(base), &out, &errOut); err != nil {
		t.Fatalf("idflow migrate: %v\n%s", err, errOut.String())
	}
	w := &deployWorld{base: base}
	a, b := w.startReplica(t, nil), w.startReplica(t, nil)
	nx := startDeployNginx(t, nginxBin, "idflow-replicas.conf", nginxPort, map[string]string{
		"IDFLOW_REPLICA_A": strings.TrimPrefix(a.URL, "http://"),
		"IDFLOW_REPLICA_B": strings.TrimPrefix(b.URL, "http://"),
	})
	r := runVerify(t, nx.URL, verifyTokens(t, tokens, callerAdmin))
	requireClean(t, r)
	// Both replicas served the verifier.
	upstreams := map[string]int{}
	for _, l := range nx.synced(t) {
		upstreams[l.Upstream]++
	}
	if upstreams[strings.TrimPrefix(a.URL, "http://")] == 0 || upstreams[strings.TrimPrefix(b.URL, "http://")] == 0 {
		t.Errorf("requests per replica: %v; want both", upstreams)
	}
}

// brokenBuild is a deliberately broken idflow and what the verifier must
// say about it.
type brokenBuild struct {
	tag string // "": the sound build, which must pass
	// target and got: every failed check is of this target (a prefix when
	// it ends with "*") and its got begins with got.
	target, got string
	problem     string // every failed check names this
}

var brokenBuilds = []brokenBuild{
	{tag: ""},
	{tag: "idflow_broken_owner", target: "GET /api/v1/facts/{fact_id}", got: "200", problem: "carries A's secret word"},
	{tag: "idflow_broken_404", target: "*", problem: "403"},
	{tag: "idflow_broken_ws", target: "WS /ws/execution/{run_id}", got: "upgraded (101)", problem: "opened a socket on A's run"},
}

// TestVerifyCatchesBrokenBuilds builds idflow with each broken-build tag
// (and without, as the control), runs it in dev mode, and runs the
// binary's own `idflow verify` against it with tokens from `idflow
// dev-token`: the sound build passes; each broken one fails (exit 1) with
// failures of exactly the broken route, for B, C and the admin, saying
// what leaked. The broken owner check's HTML report is read in Chromium.
func TestVerifyCatchesBrokenBuilds(t *testing.T) {
	goTool := goBinary(t)
	for _, bb := range brokenBuilds {
		name := bb.tag
		if name == "" {
			name = "sound"
		}
		t.Run(name, func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), "idflow")
			build := exec.Command(goTool, "build", "-tags", bb.tag, "-o", bin, ".")
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("go build -tags %q: %v\n%s", bb.tag, err, out)
			}
			server := startDevBinary(t, bin)
			dir := t.TempDir()
			htmlPath, jsonPath := filepath.Join(dir, "report.html"), filepath.Join(dir, "report.json")
			tokenCmd := func(user string) string { return fmt.Sprintf("'%s' dev-token %s --server %s", bin, user, server) }
			app := devAppToken(t, server)
			cmd := exec.Command(bin, "verify", "--server", server, "--rate", "1000", "--report", htmlPath, "--json", jsonPath,
				"--user-a-token-cmd", tokenCmd("alice"), "--user-b-token-cmd", tokenCmd("bob"),
				"--user-c-token-cmd", tokenCmd("carol"), "--admin-token-cmd", tokenCmd("admin"))
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir(), "IDFLOW_VERIFY_APP_TOKEN=" + app}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var rep verify.Report
			raw, _ := os.ReadFile(jsonPath)
			if jerr := json.Unmarshal(raw, &rep); jerr != nil {
				t.Fatalf("verify: %v, no JSON report (%v)\n%s\n%s", err, jerr, stdout.String(), lastLinesOf(stderr.String(), 20))
			}
			checkNoToken(t, []string{app}, map[string]string{"stdout": stdout.String(), "stderr": stderr.String(), "HTML report": readFile(t, htmlPath), "JSON report": string(raw)})
			if bb.tag == "" {
				requireClean(t, verifyRun{err: err, stdout: stdout.String(), stderr: stderr.String(), rep: rep})
				return
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("verify against %s: %v; want exit status 1\n%s", bb.tag, err, stdout.String())
			}
			checkBroken(t, bb, rep, stdout.String())
			if bb.tag == "idflow_broken_owner" {
				readReportInChromium(t, htmlPath, bb.target)
			}
		})
	}
}

// checkBroken: the failures are exactly the broken route's, for B, C and
// the admin (all reach A's objects there, none elsewhere), each naming
// what went wrong; the summary names them too.
func checkBroken(t *testing.T, bb brokenBuild, rep verify.Report, stdout string) {
	t.Helper()
	callers := map[string]bool{}
	for _, c := range rep.Checks {
		if c.Result != verify.Fail {
			continue
		}
		callers[c.Caller] = true
		if bb.target != "*" && c.Target != bb.target {
			t.Errorf("%s: an unrelated check failed: %s", bb.tag, c.Line())
		}
		if !strings.HasPrefix(c.Got, bb.got) || !strings.Contains(c.Line(), bb.problem) {
			t.Errorf("%s: failure %q; want got %q and a problem naming %q", bb.tag, c.Line(), bb.got, bb.problem)
		}
		if len(c.Evidence) == 0 {
			t.Errorf("%s: failure without evidence: %s", bb.tag, c.Line())
		}
		if !strings.Contains(stdout, c.Line()) {
			t.Errorf("%s: the summary does not name %s", bb.tag, c.Line())
		}
	}
	for _, who := range []string{"B", "C", "admin"} {
		if !callers[who] {
			t.Errorf("%s: no failure as %s; the broken route reaches A's objects for every other user", bb.tag, who)
		}
	}
	if callers["app"] || callers["none"] || callers["tampered"] {
		t.Errorf("%s: failures as callers the bug does not concern: %v", bb.tag, callers)
	}
}

// goBinary is the go tool, for building the broken builds.
func goBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	testsvc.Unavailable(t, "the go tool is not on PATH: the broken builds cannot be built")
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// startDevBinary runs `bin serve --dev` on a free loopback port until the
// test ends, and returns its URL.
func startDevBinary(t *testing.T, bin string) string {
	t.Helper()
	port := testsvc.FreePort(t)
	server := "http://127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin, "serve", "--dev", "--listen", "127.0.0.1:"+strconv.Itoa(port), "--data-dir", t.TempDir())
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir(), "IDFLOW_LOG_LEVEL=warn"}
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("idflow serve --dev output:\n%s", lastLinesOf(logs.String(), 30))
		}
	})
	runsPoll(t, 60*time.Second, "the dev server answers /readyz", func() (bool, string) {
		select {
		case <-exited:
			t.Fatalf("idflow serve --dev exited:\n%s", logs.String())
		default:
		}
		resp, err := runsHTTP.Get(server + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return server
}

// devAppToken asks the dev issuer for an app-only token (client
// credentials of the dev app client).
func devAppToken(t *testing.T, server string) string {
	t.Helper()
	req, err := http.NewRequest("POST", server+devidp.Path+"/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(devidp.AppClientID, devAppSecret)
	resp, err := runsHTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("the dev app token: %d %v", resp.StatusCode, err)
	}
	return tok.AccessToken
}

// readReportInChromium opens the HTML report in Chromium, as an auditor
// would: the verdict and the broken route are what the page shows first,
// and the page loads nothing from anywhere. With IDFLOW_SCREENSHOTS set it
// saves docs/screenshots/verify-report.png.
func readReportInChromium(t *testing.T, htmlPath, target string) {
	t.Helper()
	b := &browser{ctx: newBrowsers(t)(), t: t}
	b.run("open the report",
		chromedp.EmulateViewport(1280, 1700),
		chromedp.Navigate("file://"+htmlPath),
		chromedp.WaitVisible(chromedp.CSS(".verdict .badge")))
	if got := b.text(".verdict .badge"); got != "FAIL" {
		t.Errorf("the report's verdict reads %q; want FAIL", got)
	}
	if got := b.text(".failure h3"); !strings.Contains(got, target) || !strings.Contains(got, "as B") {
		t.Errorf("the first failure reads %q; want %s as B", got, target)
	}
	failedCells := value(b, "count the failed cells", chromedp.Evaluate[int](`document.querySelectorAll("td.c.fail").length`))
	if failedCells != 3 {
		t.Errorf("%d failed cells in the matrix; want 3 (B, C and the admin on %s)", failedCells, target)
	}
	external := value(b, "list what the page loaded", chromedp.Evaluate[[]string](
		`performance.getEntriesByType("resource").map(e => e.name)`))
	if len(external) != 0 {
		t.Errorf("the report loaded %v; it must be self-contained", external)
	}
	if os.Getenv("IDFLOW_SCREENSHOTS") != "" {
		png := value(b, "screenshot", chromedp.CaptureScreenshot())
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "screenshots", "verify-report.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
