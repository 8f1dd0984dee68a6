package testsvc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a PostgreSQL server of one test, on 127.0.0.1 and a unix
// socket in its own directory, with fsync off.
type Postgres struct {
	// Port is the TCP port on 127.0.0.1.
	Port int
	// SocketDir holds the unix socket.
	SocketDir string
	// Superuser is the role initdb created; its password is random.
	Superuser string
	password  string
}

// pgBinDir finds the directory with initdb and postgres: PATH first, then
// Debian's /usr/lib/postgresql/<version>/bin, newest version first.
func pgBinDir() (string, bool) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			dir := filepath.Dir(real)
			if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
				return dir, true
			}
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(matches, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[j]))))
		return vi > vj
	})
	for _, m := range matches {
		dir := filepath.Dir(m)
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, true
		}
	}
	return "", false
}

// StartPostgres initializes a cluster in a t.TempDir() and starts it on a
// free port. Running as root (as CI does), initdb and postgres run as the
// postgres system user (or nobody), since both refuse root. Without
// PostgreSQL installed the test ends through Unavailable.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	bin, ok := pgBinDir()
	if !ok {
		Unavailable(t, "PostgreSQL server binaries (initdb, postgres) not found in PATH or /usr/lib/postgresql/*/bin (Debian: apt-get install postgresql)")
	}
	as := dropRoot(t)
	dir := serviceDir(t, as)
	pg := &Postgres{Superuser: "postgres", password: randomHex(16)}

	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(pg.password+"\n"), 0o600); err != nil {
		t.Fatalf("postgres: %v", err)
	}
	chown(t, as, pwfile)
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", pg.Superuser,
		"--pwfile", pwfile, "--auth-local=trust", "--auth-host=scram-sha-256",
		"-E", "UTF8", "--locale=C", "--no-sync")
	initdb.Dir = dir
	initdb.Env = serviceEnv(as, dir)
	if as != nil {
		initdb.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: as.uid, Gid: as.gid, Groups: []uint32{}}}
	}
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, lastLines(string(out), 20))
	}
	_ = os.Remove(pwfile)

	// A unix socket path is limited to 107 bytes; a long TMPDIR or test
	// name gets a short socket directory instead.
	pg.SocketDir = dir
	if len(dir)+len("/.s.PGSQL.65535.lock") > 100 {
		d, err := os.MkdirTemp("/tmp", "pg")
		if err != nil {
			t.Fatalf("postgres socket dir: %v", err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(d) })
		chown(t, as, d)
		pg.SocketDir = d
	}

	startWithPort(t, "postgres", func(port int) error {
		cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data,
			"-k", pg.SocketDir, "-p", strconv.Itoa(port),
			"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
			"-c", "synchronous_commit=off", "-c", "full_page_writes=off",
			"-c", "max_connections=200", "-c", "shared_buffers=32MB",
			"-c", "logging_collector=off", "-c", "log_min_messages=warning")
		cmd.Dir = dir
		cmd.Env = serviceEnv(as, dir)
		// SIGINT is PostgreSQL's fast shutdown: it does not wait for clients.
		p, err := startProcess(t, "postgres", cmd, syscall.SIGINT, as)
		if err != nil {
			return err
		}
		pg.Port = port
		return p.waitReady(func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			conn, err := pgx.Connect(ctx, pg.SuperuserURL())
			if err != nil {
				return err
			}
			defer conn.Close(ctx)
			var one int
			return conn.QueryRow(ctx, "select 1").Scan(&one)
		})
	})
	return pg
}

// serviceEnv is a minimal environment for a service: nothing of the test's
// PG* variables leaks in.
func serviceEnv(as *serviceUser, home string) []string {
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "HOME=" + home}
	if as != nil {
		env = append(env, "USER="+as.name, "LOGNAME="+as.name)
	}
	return env
}

func chown(t testing.TB, as *serviceUser, path string) {
	t.Helper()
	if as == nil {
		return
	}
	if err := os.Chown(path, int(as.uid), int(as.gid)); err != nil {
		t.Fatalf("chown %s: %v", path, err)
	}
}

// URL is a postgres:// URL for user with password on database, over TCP.
func (pg *Postgres) URL(user, password, database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(user, password),
		Host:     "127.0.0.1:" + strconv.Itoa(pg.Port),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// SuperuserURL connects as the superuser to the postgres database.
func (pg *Postgres) SuperuserURL() string {
	return pg.URL(pg.Superuser, pg.password, "postgres")
}

// Exec runs sql as the superuser on database.
func (pg *Postgres) Exec(t testing.TB, database, sql string, args ...any) {
	t.Helper()
	pg.exec(t, database, firstLine(sql), sql, args...)
}

// exec runs sql; label names it in a failure (it never holds a password).
func (pg *Postgres) exec(t testing.TB, database, label, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.URL(pg.Superuser, pg.password, database))
	if err != nil {
		t.Fatalf("postgres: connect to %s: %v", database, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("postgres: %s: %v", label, err)
	}
}

// CreateRole creates a login role that is neither superuser nor BYPASSRLS
// (nor CREATEDB, CREATEROLE) and returns its password.
func (pg *Postgres) CreateRole(t testing.TB, name string) (password string) {
	t.Helper()
	password = randomHex(16)
	pg.exec(t, "postgres", "CREATE ROLE "+name, fmt.Sprintf(
		"CREATE ROLE %s LOGIN PASSWORD '%s' NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE",
		pgx.Identifier{name}.Sanitize(), password))
	return password
}

// CreateDatabase creates database name owned by owner, and revokes the
// default PUBLIC privileges on it so only roles granted CONNECT get in.
func (pg *Postgres) CreateDatabase(t testing.TB, name, owner string) {
	t.Helper()
	pg.Exec(t, "postgres", fmt.Sprintf("CREATE DATABASE %s OWNER %s TEMPLATE template0 ENCODING 'UTF8'",
		pgx.Identifier{name}.Sanitize(), pgx.Identifier{owner}.Sanitize()))
	pg.Exec(t, "postgres", fmt.Sprintf("REVOKE ALL ON DATABASE %s FROM PUBLIC", pgx.Identifier{name}.Sanitize()))
}

// Database is a fresh database with two non-superuser roles: the owner
// (for migrations; on PostgreSQL 15 it owns the public schema through
// pg_database_owner) and an app role that may only connect; granting it
// table privileges is the migrations' job.
type Database struct {
	Name               string
	Owner, App         string
	OwnerURL, AppURL   string
	ownerPass, appPass string
}

// NewDatabase creates a database with random names for it and its roles.
func (pg *Postgres) NewDatabase(t testing.TB) *Database {
	t.Helper()
	suffix := randomHex(6)
	db := &Database{Name: "idflow_" + suffix, Owner: "idflow_owner_" + suffix, App: "idflow_app_" + suffix}
	db.ownerPass = pg.CreateRole(t, db.Owner)
	db.appPass = pg.CreateRole(t, db.App)
	pg.CreateDatabase(t, db.Name, db.Owner)
	pg.Exec(t, "postgres", fmt.Sprintf("GRANT CONNECT ON DATABASE %s TO %s",
		pgx.Identifier{db.Name}.Sanitize(), pgx.Identifier{db.App}.Sanitize()))
	db.OwnerURL = pg.URL(db.Owner, db.ownerPass, db.Name)
	db.AppURL = pg.URL(db.App, db.appPass, db.Name)
	return db
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
