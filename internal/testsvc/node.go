package testsvc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Node returns the path of node, or ends the test through Unavailable.
func Node(t testing.TB) string {
	t.Helper()
	p, ok := lookPath("node", "nodejs")
	if !ok {
		Unavailable(t, "node not found in PATH (Debian: apt-get install nodejs npm, or Node.js 20+)")
	}
	return p
}

// npmInstalls remembers, per directory, the outcome of NPMInstall in this
// process.
var npmInstalls struct {
	sync.Mutex
	done map[string]error
}

// npmStampFile records, inside node_modules, what was installed.
const npmStampFile = ".idflow-install-stamp"

// NPMInstall installs the dependencies of the Node project in dir: `npm ci`
// when it has a package-lock.json, else `npm install`. It runs at most once
// per directory per test process, under a file lock that serializes test
// processes (go test runs packages in parallel), and not at all when
// node_modules already matches package.json, package-lock.json and the
// node version. A missing npm or a failed install ends the test through
// Unavailable.
func NPMInstall(t testing.TB, dir string) {
	t.Helper()
	node := Node(t)
	npm, ok := lookPath("npm")
	if !ok {
		Unavailable(t, "npm not found in PATH")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatalf("npm install: %v", err)
	}
	npmInstalls.Lock()
	defer npmInstalls.Unlock()
	if npmInstalls.done == nil {
		npmInstalls.done = map[string]error{}
	}
	err, ran := npmInstalls.done[abs]
	if !ran {
		err = npmInstall(node, npm, abs)
		npmInstalls.done[abs] = err
	}
	if err != nil {
		Unavailable(t, "npm install in %s: %v", dir, err)
	}
}

func npmInstall(node, npm, dir string) error {
	stamp, err := npmStamp(node, dir)
	if err != nil {
		return err
	}
	// Serialize with other test processes installing the same directory.
	sum := sha256.Sum256([]byte(dir))
	lockPath := filepath.Join(os.TempDir(), fmt.Sprintf("idflow-npm-%d-%s.lock", os.Getuid(), hex.EncodeToString(sum[:8])))
	lock, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck

	stampPath := filepath.Join(dir, "node_modules", npmStampFile)
	if have, err := os.ReadFile(stampPath); err == nil && string(have) == stamp {
		return nil
	}
	args := []string{"install"}
	if _, err := os.Stat(filepath.Join(dir, "package-lock.json")); err == nil {
		args = []string{"ci"}
	}
	args = append(args, "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=warn")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, args...)
	cmd.Dir = dir
	// npm's own scripts must use the node we found.
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(node)+string(os.PathListSeparator)+os.Getenv("PATH"))
	out := newTailBuffer()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("npm %s: %v: %s", args[0], err, lastLines(out.String(), 20))
	}
	return os.WriteFile(stampPath, []byte(stamp), 0o644)
}

// npmStamp identifies the inputs of an install.
func npmStamp(node, dir string) (string, error) {
	h := sha256.New()
	for _, f := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil && !(f == "package-lock.json" && os.IsNotExist(err)) {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	v, err := exec.Command(node, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("node --version: %w", err)
	}
	h.Write(v)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// RepoDir returns the path of rel inside the repository (the directory that
// holds go.mod), from any package's test.
func RepoDir(t testing.TB, rel string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("getwd: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, filepath.FromSlash(rel))
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.mod above the working directory")
		}
		dir = parent
	}
}
