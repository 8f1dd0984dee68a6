// Package proc reads what the load tools under bench/ report of a process
// (its resident memory and CPU time, from /proc), and shortens errors for
// their failure tallies.
package proc

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"time"
)

// RSS reads a process's resident set size in KiB.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS in /proc/" + strconv.Itoa(pid) + "/status")
}

// CPU reads a process's user + system CPU time from /proc/<pid>/stat (in
// clock ticks of 10 ms: USER_HZ is 100 on Linux).
func CPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc/" + strconv.Itoa(pid) + "/stat")
	}
	f := strings.Fields(string(b)[i+1:])
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc/" + strconv.Itoa(pid) + "/stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// ShortErr names err by the network failure it is, or by its first 80
// characters, so that failures tally by kind.
func ShortErr(err error) string {
	s := err.Error()
	for _, k := range []string{"connection refused", "connection reset", "too many open files", "cannot assign requested address", "timeout", "deadline exceeded", "EOF"} {
		if strings.Contains(s, k) {
			return k
		}
	}
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}
