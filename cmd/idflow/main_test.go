package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
)

// TestMain lets the test binary double as the idflow server: with
// IDFLOW_TEST_CHILD=serve it runs `idflow serve <IDFLOW_TEST_CHILD_ARGS>`
// (a JSON array) with the process's environment and exits, so that a test
// can run the server as a separate process and kill it with SIGKILL
// (startRunsChild in runs_harness_test.go).
func TestMain(m *testing.M) {
	if os.Getenv("IDFLOW_TEST_CHILD") == "serve" {
		os.Exit(serveAsTestChild())
	}
	os.Exit(m.Run())
}

func serveAsTestChild() int {
	var args []string
	if raw := os.Getenv("IDFLOW_TEST_CHILD_ARGS"); raw != "" {
		if err := json.Unmarshal([]byte(raw), &args); err != nil {
			fmt.Fprintln(os.Stderr, "IDFLOW_TEST_CHILD_ARGS:", err)
			return 2
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, append([]string{"serve"}, args...), os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "idflow:", err)
		return 1
	}
	return 0
}
