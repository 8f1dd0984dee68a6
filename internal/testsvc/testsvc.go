// Package testsvc starts real services on loopback for tests: PostgreSQL,
// Redis, memcached and an independent OpenID provider (the npm
// oidc-provider), and finds nginx and Chromium.
//
// Every service runs in its own process group, in a t.TempDir(), on a free
// random port, and is stopped in t.Cleanup; readiness is polled over the
// service's own protocol with a deadline. A service that is not installed
// makes the test skip through Unavailable — or fail when
// IDFLOW_REQUIRE_SERVICES=1, as in CI.
package testsvc

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RequireEnv is the variable that turns a missing service into a failure.
const RequireEnv = "IDFLOW_REQUIRE_SERVICES"

// startTimeout bounds how long a service may take to become ready.
const startTimeout = 90 * time.Second

// stopTimeout is how long a service gets to exit on its stop signal before
// its process group is killed.
const stopTimeout = 10 * time.Second

// Unavailable ends the test because a service it needs is missing: a skip
// with the reason, or, when IDFLOW_REQUIRE_SERVICES=1, a failure. It is the
// only place in idflow that skips a test for a missing service.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, args...)
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("required service unavailable (%s=1): %s", RequireEnv, reason)
	}
	t.Skipf("service unavailable: %s (set %s=1 to fail instead)", reason, RequireEnv)
}

// lookPath returns the first of names found in PATH or as an absolute path.
func lookPath(names ...string) (string, bool) {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, true
		}
	}
	return "", false
}

// NginxPath returns the nginx binary, or ends the test through Unavailable.
func NginxPath(t testing.TB) string {
	t.Helper()
	p, ok := lookPath("nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
	if !ok {
		Unavailable(t, "nginx not found (Debian: apt-get install nginx)")
	}
	return p
}

// ChromiumPath returns a Chromium or Chrome binary, or ends the test through
// Unavailable.
func ChromiumPath(t testing.TB) string {
	t.Helper()
	p, ok := lookPath("chromium", "chromium-browser", "google-chrome", "google-chrome-stable",
		"/usr/bin/chromium", "/usr/lib/chromium/chromium")
	if !ok {
		Unavailable(t, "chromium not found (Debian: apt-get install chromium)")
	}
	return p
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// Starters retry with a new port when a service loses the race for it.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// tailBuffer keeps the last max bytes written to it; safe for concurrent use.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func newTailBuffer() *tailBuffer { return &tailBuffer{max: 64 << 10} }

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(bytes.TrimSpace(b.buf))
}

// process is a service started by this package.
type process struct {
	name   string
	cmd    *exec.Cmd
	output *tailBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // its exit status, valid after done
	stop   syscall.Signal
}

// serviceUser is who services that refuse root run as, when the tests run as
// root (as in CI): postgres if it exists, else nobody.
type serviceUser struct {
	name     string
	uid, gid uint32
}

// dropRoot returns the user to run a service as, or nil when not root.
func dropRoot(t testing.TB) *serviceUser {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			continue
		}
		return &serviceUser{name: name, uid: uint32(uid), gid: uint32(gid)}
	}
	t.Fatalf("running as root and neither a postgres nor a nobody user exists to run services as")
	return nil
}

// serviceDir returns an empty directory for a service's files. When the
// service runs as another user, the directory is owned by that user and
// every directory above it is traversable.
func serviceDir(t testing.TB, as *serviceUser) string {
	t.Helper()
	dir := t.TempDir()
	if as == nil {
		return dir
	}
	// t.TempDir's parent is a 0700 directory of this test; let the service
	// user through it (it cannot list it).
	_ = os.Chmod(filepath.Dir(dir), 0o711)
	if !traversable(filepath.Dir(dir)) {
		// TMPDIR lies under a private directory: use one under /tmp.
		d, err := os.MkdirTemp("/tmp", "idflow-svc-")
		if err != nil {
			t.Fatalf("service dir: %v", err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(d) })
		dir = d
	}
	if err := os.Chown(dir, int(as.uid), int(as.gid)); err != nil {
		t.Fatalf("service dir: %v", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatalf("service dir: %v", err)
	}
	return dir
}

// traversable reports whether every directory from / to dir lets others
// search it.
func traversable(dir string) bool {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == filepath.Dir(d) {
			return true
		}
	}
}

// startProcess starts cmd in its own process group and registers its
// cleanup: the stop signal to the group, then SIGKILL to whatever is left.
func startProcess(t testing.TB, name string, cmd *exec.Cmd, stop syscall.Signal, as *serviceUser) (*process, error) {
	t.Helper()
	p := &process{name: name, cmd: cmd, output: newTailBuffer(), done: make(chan struct{}), stop: stop}
	if cmd.Stdout == nil {
		cmd.Stdout = p.output
	}
	if cmd.Stderr == nil {
		cmd.Stderr = p.output
	}
	attr := &syscall.SysProcAttr{
		Setpgid: true,
		// A test binary that dies (a -timeout panic) takes its services along.
		Pdeathsig: syscall.SIGKILL,
	}
	if as != nil {
		attr.Credential = &syscall.Credential{Uid: as.uid, Gid: as.gid, Groups: []uint32{}}
	}
	cmd.SysProcAttr = attr
	cmd.WaitDelay = stopTimeout
	var err error
	onSpawnerThread(func() { err = cmd.Start() })
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.terminate(t) })
	return p, nil
}

// spawner is one OS thread that starts every service. Linux sends the
// parent-death signal (Pdeathsig) when the thread that forked a child exits,
// not the process; Go ends a thread when a goroutine locked to it returns,
// so forking from an arbitrary test goroutine's thread could kill a service
// in the middle of a test. This thread is locked and never exits.
var spawner struct {
	once sync.Once
	reqs chan func()
}

func onSpawnerThread(f func()) {
	spawner.once.Do(func() {
		spawner.reqs = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for req := range spawner.reqs {
				req()
			}
		}()
	})
	done := make(chan struct{})
	spawner.reqs <- func() {
		defer close(done)
		f()
	}
	<-done
}

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// terminate stops the whole process group and waits for the leader.
func (p *process) terminate(t testing.TB) {
	pgid := p.cmd.Process.Pid
	if !p.exited() {
		_ = syscall.Kill(-pgid, p.stop)
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
			t.Logf("%s did not stop within %s; killing it", p.name, stopTimeout)
		}
	}
	// Children that outlived the leader (or a leader that ignored the stop
	// signal) go too; ESRCH just means the group is already empty.
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Logf("kill %s process group: %v", p.name, err)
	}
	<-p.done
	if t.Failed() {
		if out := p.output.String(); out != "" {
			t.Logf("%s output (tail):\n%s", p.name, out)
		}
	}
}

// waitReady polls probe until it succeeds, the process exits, or the
// deadline passes. The pause between attempts grows from 10 ms to 250 ms;
// it paces the polling, it does not stand in for readiness.
func (p *process) waitReady(probe func() error) error {
	deadline := time.Now().Add(startTimeout)
	pause := 10 * time.Millisecond
	var last error
	for {
		if last = probe(); last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %w", p.name, startTimeout, last)
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready (%v): %s", p.name, p.err, lastLines(p.output.String(), 20))
		case <-time.After(pause):
		}
		if pause < 250*time.Millisecond {
			pause *= 2
		}
	}
}

// startWithPort runs start with fresh free ports until it succeeds (a service
// may lose its port to another process between FreePort and bind).
func startWithPort(t testing.TB, name string, start func(port int) error) {
	t.Helper()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = start(FreePort(t)); err == nil {
			return
		}
		if !strings.Contains(strings.ToLower(err.Error()), "address already in use") &&
			!strings.Contains(strings.ToLower(err.Error()), "could not create listen socket") {
			break
		}
	}
	t.Fatalf("%s: %v", name, err)
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
