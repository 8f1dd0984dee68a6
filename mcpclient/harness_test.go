package mcpclient_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/idflow/idflow"
	"github.com/idflow/idflow/auth"
	"github.com/idflow/idflow/auth/authtest"
	"github.com/idflow/idflow/internal/testsvc"
	"github.com/idflow/idflow/mcpclient"
	"github.com/idflow/idflow/tools"
)

// user is a verified user in tenant t-one, in groups.
func user(id string, groups ...string) idflow.Principal {
	p := authtest.User(id, "t-one")
	p.Groups = append([]string{}, groups...)
	return p
}

var (
	alice = user("alice", "engineering")
	bob   = user("bob")
)

// idflowKeys is idflow's assertion signer, with its JWKS served at
// /.well-known/idflow/jwks.json of its public URL, as httpapi serves it.
type idflowKeys struct {
	signer *auth.Signer
	issuer string
	jwks   string
}

func newIdflowKeys(t *testing.T) *idflowKeys {
	t.Helper()
	k := &idflowKeys{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/idflow/jwks.json" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(k.signer.JWKS())
	}))
	k.issuer = "http://" + srv.Listener.Addr().String()
	k.jwks = k.issuer + "/.well-known/idflow/jwks.json"
	k.signer = newSigner(t, k.issuer)
	srv.Start()
	t.Cleanup(srv.Close)
	return k
}

func newSigner(t *testing.T, issuer string) *auth.Signer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := auth.NewSigner(key, issuer)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// logBuffer collects log lines for assertions; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// servers builds Servers from a JSON file body; it is closed with the test.
func servers(t *testing.T, file string, deps mcpclient.Deps) *mcpclient.Servers {
	t.Helper()
	cfg, err := mcpclient.Parse([]byte(file))
	if err != nil {
		t.Fatalf("parse %s: %v", file, err)
	}
	s, err := mcpclient.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// toolsOf lists p's tools by name.
func toolsOf(t *testing.T, s *mcpclient.Servers, p idflow.Principal) map[string]tools.Tool {
	t.Helper()
	ts, err := s.Tools(t.Context(), p)
	if err != nil {
		t.Fatalf("Tools(%s): %v", p.UserID, err)
	}
	out := map[string]tools.Tool{}
	for _, tl := range ts {
		out[tl.Name] = tl
	}
	return out
}

func names(m map[string]tools.Tool) string {
	var out []string
	for n := range m {
		out = append(out, n)
	}
	slices.Sort(out)
	return fmt.Sprint(out)
}

// run calls tool as p with args (a JSON object).
func run(ctx context.Context, t *testing.T, tl tools.Tool, p idflow.Principal, args string) (any, error) {
	t.Helper()
	if tl.Run == nil {
		t.Fatalf("no tool")
	}
	return tl.Run(ctx, p, json.RawMessage(args))
}

// asMap decodes a tool result into a map, through JSON as a catalog would.
func asMap(t *testing.T, v any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("result %s is not an object: %v", b, err)
	}
	return m
}

// tsDownstream starts the TypeScript downstream server trusting keys.
func tsDownstream(t *testing.T, keys *idflowKeys) *testsvc.DownstreamMCP {
	t.Helper()
	return testsvc.StartDownstreamMCP(t, keys.issuer, keys.jwks)
}

func errContains(err error, code, text string) bool {
	return err != nil && idflow.ErrorCode(err) == code && strings.Contains(idflow.ErrorMessage(err), text)
}
