package testsvc

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// StartRedis starts redis-server on 127.0.0.1 and a free port, without
// persistence, and returns its host:port. Without redis-server installed
// the test ends through Unavailable.
func StartRedis(t testing.TB) (addr string) {
	t.Helper()
	bin, ok := lookPath("redis-server", "/usr/bin/redis-server", "/usr/local/bin/redis-server")
	if !ok {
		Unavailable(t, "redis-server not found (Debian: apt-get install redis-server)")
	}
	dir := t.TempDir()
	startWithPort(t, "redis-server", func(port int) error {
		cmd := exec.Command(bin,
			"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir,
			"--save", "", "--appendonly", "no", "--daemonize", "no",
			"--protected-mode", "yes", "--logfile", "", "--loglevel", "warning")
		cmd.Dir = dir
		cmd.Env = serviceEnv(nil, dir)
		p, err := startProcess(t, "redis-server", cmd, syscall.SIGTERM, nil)
		if err != nil {
			return err
		}
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		return p.waitReady(func() error {
			reply, err := RoundTrip(addr, "PING\r\n")
			if err != nil {
				return err
			}
			if reply != "+PONG" {
				return fmt.Errorf("PING answered %q", reply)
			}
			return nil
		})
	})
	return addr
}

// StartMemcached starts memcached on 127.0.0.1 and a free port (TCP only)
// and returns its host:port. Running as root, it runs as an unprivileged
// user. Without memcached installed the test ends through Unavailable.
func StartMemcached(t testing.TB) (addr string) {
	t.Helper()
	bin, ok := lookPath("memcached", "/usr/bin/memcached", "/usr/local/bin/memcached")
	if !ok {
		Unavailable(t, "memcached not found (Debian: apt-get install memcached)")
	}
	as := dropRoot(t)
	dir := serviceDir(t, as)
	startWithPort(t, "memcached", func(port int) error {
		cmd := exec.Command(bin, "-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0", "-m", "64", "-c", "1024")
		cmd.Dir = dir
		cmd.Env = serviceEnv(as, dir)
		// memcached notices SIGTERM only on its next one-second clock tick;
		// it holds nothing worth a graceful stop.
		p, err := startProcess(t, "memcached", cmd, syscall.SIGKILL, as)
		if err != nil {
			return err
		}
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		return p.waitReady(func() error {
			reply, err := RoundTrip(addr, "version\r\n")
			if err != nil {
				return err
			}
			if !strings.HasPrefix(reply, "VERSION ") {
				return fmt.Errorf("version answered %q", reply)
			}
			return nil
		})
	})
	return addr
}

// RoundTrip sends one request of a line protocol (a Redis inline command,
// memcached's text protocol) to addr and returns the first line of the
// answer without its CRLF.
func RoundTrip(addr, request string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte(request)); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}
