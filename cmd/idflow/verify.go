package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/idflow/idflow/verify"
)

// tokenSource is one credential of `idflow verify`: a token, or a command
// that prints one. Each has flags and environment variables; the
// variables keep tokens out of the process list.
type tokenSource struct {
	flag, env, help string
	token, command  string
	dst             *string
}

// cmdVerify runs `idflow verify`: the isolation checks of package verify
// against a live deployment, with a progress bar, a summary table, an
// optional HTML and JSON report, and exit status 1 when a check fails.
func cmdVerify(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: idflow verify --server URL --user-a-token-cmd CMD --user-b-token-cmd CMD --user-c-token-cmd CMD [flags]

Proves against a live deployment that no user sees another user's data
(docs/VERIFY.md). A and B must be users of one tenant, C of another. The
server must allow it: IDFLOW_ALLOW_VERIFY=true (on by default in --dev).
Tokens may also come from IDFLOW_VERIFY_USER_A_TOKEN (…_TOKEN_CMD) and the
like, which keeps them out of the process list; no token is ever printed.

flags:
`)
		fs.PrintDefaults()
	}
	cfg := verify.Config{}
	server := fs.String("server", getenv("IDFLOW_VERIFY_SERVER"), "base URL of the deployment [IDFLOW_VERIFY_SERVER]")
	sources := []*tokenSource{
		{flag: "user-a", env: "IDFLOW_VERIFY_USER_A_TOKEN", help: "user A, who owns the test objects", dst: &cfg.Tokens.A},
		{flag: "user-b", env: "IDFLOW_VERIFY_USER_B_TOKEN", help: "user B, of A's tenant", dst: &cfg.Tokens.B},
		{flag: "user-c", env: "IDFLOW_VERIFY_USER_C_TOKEN", help: "user C, of another tenant", dst: &cfg.Tokens.C},
		{flag: "admin", env: "IDFLOW_VERIFY_ADMIN_TOKEN", help: "optional: a tenant admin (not a platform admin)", dst: &cfg.Tokens.Admin},
		{flag: "app", env: "IDFLOW_VERIFY_APP_TOKEN", help: "optional: an app-only (client credentials) token", dst: &cfg.Tokens.App},
		{flag: "expired", env: "IDFLOW_VERIFY_EXPIRED_TOKEN", help: "optional: an expired user token", dst: &cfg.Tokens.Expired},
	}
	for _, s := range sources {
		// No default values: -h must never print a token.
		fs.StringVar(&s.token, s.flag+"-token", "", "bearer token of "+s.help+" [$"+s.env+"]")
		fs.StringVar(&s.command, s.flag+"-token-cmd", "", "shell command that prints the token of "+s.help+", e.g. 'idflow token' [$"+s.env+"_CMD]")
	}
	fs.Float64Var(&cfg.Rate, "rate", verify.DefaultRate, fmt.Sprintf("most requests per second (at most %d)", verify.MaxRate))
	fs.BoolVar(&cfg.AllowRemote, "yes", false, "verify a server that is not on a loopback address")
	report := fs.String("report", "", "write the HTML report to this file")
	jsonOut := fs.String("json", "", "write the report as JSON to this file (- for standard output)")
	timeout := fs.Duration("timeout", 30*time.Minute, "stop the checks after this long (the test objects are still removed)")
	quiet := fs.Bool("quiet", false, "no progress")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("verify: unexpected arguments %q", fs.Args())
	}
	if *server == "" {
		fs.Usage()
		return errors.New("verify: --server is required")
	}
	cfg.Server = *server
	for _, s := range sources {
		tok, err := s.resolve(ctx, getenv, stderr)
		if err != nil {
			return err
		}
		*s.dst = tok
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if !*quiet {
		cfg.Progress = newProgress(stderr)
	}
	rep, err := verify.Run(ctx, cfg)
	if cfg.Progress != nil {
		cfg.Progress(verify.Progress{Phase: "done"})
	}
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	summary := stdout
	if *jsonOut == "-" {
		summary = stderr
	}
	if err := rep.WriteSummary(summary); err != nil {
		return err
	}
	if *report != "" {
		if err := writeReport(*report, rep.WriteHTML); err != nil {
			return fmt.Errorf("--report: %w", err)
		}
		fmt.Fprintln(summary, "HTML report:", *report)
	}
	switch *jsonOut {
	case "":
	case "-":
		if err := rep.WriteJSON(stdout); err != nil {
			return err
		}
	default:
		if err := writeReport(*jsonOut, rep.WriteJSON); err != nil {
			return fmt.Errorf("--json: %w", err)
		}
	}
	if !rep.Passed {
		return fmt.Errorf("verification failed: %d of %d checks failed", rep.Totals().Failed, rep.Totals().Checks)
	}
	return nil
}

// resolve returns the token: given, or printed by the command. The
// command's output is never shown (it is a token); its standard error is.
func (s *tokenSource) resolve(ctx context.Context, getenv func(string) string, stderr io.Writer) (string, error) {
	tok, command := s.token, s.command
	if tok == "" {
		tok = getenv(s.env)
	}
	if command == "" {
		command = getenv(s.env + "_CMD")
	}
	if tok != "" && command != "" {
		return "", fmt.Errorf("verify: give the token of %s or a command that prints it, not both (--%s-token, --%s-token-cmd)", s.help, s.flag, s.flag)
	}
	if command == "" {
		return strings.TrimSpace(tok), nil
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute) // a device sign-in may wait for the user
	defer cancel()
	cmd := exec.CommandContext(cctx, "sh", "-c", command)
	var out bytes.Buffer
	cmd.Stdout = &limitedWriter{w: &out, n: 64 << 10}
	cmd.Stderr = stderr
	cmd.Stdin = os.Stdin
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("verify: --%s-token-cmd failed: %w", s.flag, err)
	}
	tok = strings.TrimSpace(out.String())
	if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("verify: --%s-token-cmd must print exactly one token (it printed %d lines)", s.flag, strings.Count(tok, "\n")+1)
	}
	return tok, nil
}

// limitedWriter keeps at most n bytes.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if len(p) > l.n {
		return 0, errors.New("the command printed too much for a token")
	}
	l.n -= len(p)
	return l.w.Write(p)
}

func writeReport(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// newProgress draws a bar on a terminal, and a line per phase and per
// tenth of the way otherwise (a CI log).
func newProgress(w io.Writer) func(verify.Progress) {
	f, ok := w.(*os.File)
	tty := false
	if ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	phase, tenth, drawn := "", -1, false
	return func(p verify.Progress) {
		if p.Phase == "done" {
			if tty && drawn {
				fmt.Fprint(w, "\r\033[K")
			}
			return
		}
		pct := 0
		if p.Total > 0 {
			pct = p.Done * 100 / p.Total
		}
		if tty {
			const width = 28
			n := width * pct / 100
			cur := []rune(p.Current)
			if len(cur) > 48 {
				cur = append(cur[:47], '…')
			}
			fmt.Fprintf(w, "\r\033[K%-9s [%s%s] %3d%% %d/%d %s", p.Phase, strings.Repeat("█", n), strings.Repeat("░", width-n), pct, p.Done, p.Total, string(cur))
			drawn = true
			return
		}
		if p.Phase != phase || pct/10 != tenth {
			phase, tenth = p.Phase, pct/10
			fmt.Fprintf(w, "verify: %3d%% %d/%d %s: %s\n", pct, p.Done, p.Total, p.Phase, p.Current)
		}
	}
}
