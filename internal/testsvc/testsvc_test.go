package testsvc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestPostgres(t *testing.T) {
	t.Parallel()
	pg := StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	su, err := pgx.Connect(ctx, pg.SuperuserURL())
	if err != nil {
		t.Fatalf("connect as superuser: %v", err)
	}
	defer su.Close(ctx)
	var isSuper string
	if err := su.QueryRow(ctx, "SHOW is_superuser").Scan(&isSuper); err != nil || isSuper != "on" {
		t.Fatalf("superuser URL: is_superuser=%q, %v", isSuper, err)
	}
	var fsync string
	if err := su.QueryRow(ctx, "SHOW fsync").Scan(&fsync); err != nil || fsync != "off" {
		t.Fatalf("fsync=%q, %v; want off", fsync, err)
	}

	db := pg.NewDatabase(t)
	owner, err := pgx.Connect(ctx, db.OwnerURL)
	if err != nil {
		t.Fatalf("connect as owner: %v", err)
	}
	defer owner.Close(ctx)
	if _, err := owner.Exec(ctx, "CREATE TABLE notes (user_id text NOT NULL, body text NOT NULL)"); err != nil {
		t.Fatalf("owner cannot create a table: %v", err)
	}
	if _, err := owner.Exec(ctx, "INSERT INTO notes VALUES ('u1', 'hello')"); err != nil {
		t.Fatal(err)
	}

	app, err := pgx.Connect(ctx, db.AppURL)
	if err != nil {
		t.Fatalf("connect as app: %v", err)
	}
	defer app.Close(ctx)
	var super, bypass bool
	if err := app.QueryRow(ctx, "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user").Scan(&super, &bypass); err != nil {
		t.Fatal(err)
	}
	if super || bypass {
		t.Fatalf("app role: superuser=%v bypassrls=%v; want neither", super, bypass)
	}
	// The app role has no privilege until migrations grant one.
	_, err = app.Exec(ctx, "SELECT * FROM notes")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Fatalf("app role read an ungranted table: %v; want insufficient_privilege", err)
	}
	if _, err := owner.Exec(ctx, "GRANT SELECT ON notes TO "+pgx.Identifier{db.App}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	var body string
	if err := app.QueryRow(ctx, "SELECT body FROM notes WHERE user_id = $1", "u1").Scan(&body); err != nil || body != "hello" {
		t.Fatalf("app read %q, %v; want hello", body, err)
	}

	// A role without CONNECT cannot get into the database at all.
	outsider := "outsider_" + randomHex(4)
	pass := pg.CreateRole(t, outsider)
	conn, err := pgx.Connect(ctx, pg.URL(outsider, pass, db.Name))
	if err == nil {
		conn.Close(ctx)
		t.Fatalf("a role without CONNECT got into %s", db.Name)
	}
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Fatalf("outsider: %v; want insufficient_privilege", err)
	}
	if _, err := os.Stat(pg.SocketDir); err != nil {
		t.Fatalf("socket dir: %v", err)
	}
}

func TestPostgresWrongPasswordRefused(t *testing.T) {
	t.Parallel()
	pg := StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.URL(pg.Superuser, "wrong", "postgres"))
	if err == nil {
		conn.Close(ctx)
		t.Fatal("a wrong superuser password was accepted over TCP")
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("wrong password: %v; want invalid_password (28P01)", err)
	}
}

func TestRedis(t *testing.T) {
	t.Parallel()
	addr := StartRedis(t)
	if reply, err := RoundTrip(addr, "PING\r\n"); err != nil || reply != "+PONG" {
		t.Fatalf("PING: %q, %v", reply, err)
	}
	if reply, err := RoundTrip(addr, "SET idflow:k v1\r\n"); err != nil || reply != "+OK" {
		t.Fatalf("SET: %q, %v", reply, err)
	}
	if reply, err := RoundTrip(addr, "EXISTS idflow:k\r\n"); err != nil || reply != ":1" {
		t.Fatalf("EXISTS: %q, %v", reply, err)
	}
	if host, _, _ := net.SplitHostPort(addr); host != "127.0.0.1" {
		t.Fatalf("redis on %s; want loopback", addr)
	}
}

func TestMemcached(t *testing.T) {
	t.Parallel()
	addr := StartMemcached(t)
	reply, err := RoundTrip(addr, "version\r\n")
	if err != nil || !strings.HasPrefix(reply, "VERSION ") {
		t.Fatalf("version: %q, %v", reply, err)
	}
	if reply, err := RoundTrip(addr, "set idflow:k 0 60 2\r\nv1\r\n"); err != nil || reply != "STORED" {
		t.Fatalf("set: %q, %v", reply, err)
	}
	if reply, err := RoundTrip(addr, "get idflow:k\r\n"); err != nil || reply != "VALUE idflow:k 0 2" {
		t.Fatalf("get: %q, %v", reply, err)
	}
}

// TestStopsService checks the cleanup: once a test's cleanups ran, its
// service's port is closed.
func TestStopsService(t *testing.T) {
	t.Parallel()
	var addr string
	t.Run("inner", func(t *testing.T) {
		addr = StartRedis(t)
		if _, err := RoundTrip(addr, "PING\r\n"); err != nil {
			t.Fatal(err)
		}
	})
	if addr == "" {
		return // the inner test reported why Redis was unavailable (and failed under IDFLOW_REQUIRE_SERVICES=1)
	}
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		conn.Close()
		t.Fatalf("redis still listening on %s after its test's cleanup", addr)
	}
}

func TestBinaries(t *testing.T) {
	t.Parallel()
	for name, find := range map[string]func(testing.TB) string{"nginx": NginxPath, "chromium": ChromiumPath} {
		t.Run(name, func(t *testing.T) {
			p := find(t)
			flag := "-v"
			if name == "chromium" {
				flag = "--version"
			}
			cmd := exec.Command(p, flag)
			cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s %s: %v: %s", p, flag, err, out)
			}
			if !strings.Contains(strings.ToLower(string(out)), name) {
				t.Fatalf("%s %s printed %q", p, flag, out)
			}
		})
	}
}

func TestOIDCProvider(t *testing.T) {
	t.Parallel()
	const aud = "https://api.testsvc.test"
	op := StartOIDCProvider(t, OIDCProviderOptions{Audiences: []string{aud}})
	if !strings.HasPrefix(op.Issuer, "http://127.0.0.1:") {
		t.Fatalf("issuer %q", op.Issuer)
	}
	user := op.UserToken(t, "alice", aud)
	if strings.Count(user.AccessToken, ".") != 2 || user.IDToken == "" {
		t.Fatalf("user tokens: access token is not a JWS or no id_token (type %q)", user.TokenType)
	}
	app := op.AppToken(t, aud)
	if strings.Count(app.AccessToken, ".") != 2 || app.Scope != "api" {
		t.Fatalf("app token: not a JWS or scope %q", app.Scope)
	}
}

func TestUnavailable(t *testing.T) {
	// Not parallel: it sets the environment.
	t.Setenv(RequireEnv, "")
	ft := &fakeTB{TB: t}
	runGoexit(func() { Unavailable(ft, "thing %d missing", 7) })
	if !ft.skipped || ft.fatal || !strings.Contains(ft.msg, "thing 7 missing") {
		t.Fatalf("without %s: skipped=%v fatal=%v msg=%q", RequireEnv, ft.skipped, ft.fatal, ft.msg)
	}
	t.Setenv(RequireEnv, "1")
	ft = &fakeTB{TB: t}
	runGoexit(func() { Unavailable(ft, "thing missing") })
	if ft.skipped || !ft.fatal || !strings.Contains(ft.msg, "thing missing") {
		t.Fatalf("with %s=1: skipped=%v fatal=%v msg=%q", RequireEnv, ft.skipped, ft.fatal, ft.msg)
	}
}

func TestFreePortIsFree(t *testing.T) {
	t.Parallel()
	port := FreePort(t)
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("FreePort gave %d, which cannot be bound: %v", port, err)
	}
	l.Close()
}

// fakeTB records Skipf and Fatalf instead of ending the real test.
type fakeTB struct {
	testing.TB
	skipped, fatal bool
	msg            string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped = true
	f.msg = sprintf(format, args...)
	runtimeGoexit()
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = true
	f.msg = sprintf(format, args...)
	runtimeGoexit()
}

var sprintf = fmt.Sprintf

func runtimeGoexit() { runtime.Goexit() }

// runGoexit runs f in its own goroutine and waits for it, so that f may end
// with runtime.Goexit as Skipf and Fatalf do.
func runGoexit(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}
