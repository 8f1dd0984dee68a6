package main

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// TestConfigurationDocumented keeps docs/CONFIGURATION.md in step with the
// settings serve reads.
func TestConfigurationDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/CONFIGURATION.md")
	if err != nil {
		t.Fatal(err)
	}
	var c config
	for _, s := range c.settings() {
		if !strings.Contains(string(doc), "`"+s.env+"`") || !strings.Contains(string(doc), "`--"+s.flag+"`") {
			t.Errorf("%s (--%s) is not documented in docs/CONFIGURATION.md", s.env, s.flag)
		}
	}
}

func TestServeHelpIsNotAnError(t *testing.T) {
	if err := run(t.Context(), []string{"serve", "-h"}, func(string) string { return "" }, io.Discard, io.Discard); err != nil {
		t.Fatalf("serve -h: %v", err)
	}
}

// TestRunsPerUserConfig: IDFLOW_RUNS_PER_USER defaults to 2 and refuses
// anything but an integer from 1 to 1000.
func TestRunsPerUserConfig(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want int // 0: refused
	}{{"", 2}, {"1", 1}, {"16", 16}, {"0", 0}, {"-3", 0}, {"two", 0}, {"1001", 0}} {
		cfg, _, err := loadConfig("serve", nil, func(k string) string {
			if k == "IDFLOW_RUNS_PER_USER" {
				return tc.env
			}
			return ""
		}, io.Discard)
		switch {
		case tc.want == 0 && (err == nil || !strings.Contains(err.Error(), "IDFLOW_RUNS_PER_USER")):
			t.Errorf("IDFLOW_RUNS_PER_USER=%q: %v; want refused", tc.env, err)
		case tc.want != 0 && (err != nil || cfg.runsPerUser != tc.want):
			t.Errorf("IDFLOW_RUNS_PER_USER=%q: %v, %v; want %d", tc.env, cfg, err, tc.want)
		}
	}
}

// TestLLMConfig: IDFLOW_LLM_TIMEOUT is a positive duration (default 2m),
// IDFLOW_LLM_MAX_RETRIES an integer from 0 to 10 (default 2).
func TestLLMConfig(t *testing.T) {
	for _, tc := range []struct {
		env, value string
		ok         bool
	}{
		{"IDFLOW_LLM_TIMEOUT", "", true}, {"IDFLOW_LLM_TIMEOUT", "30s", true}, {"IDFLOW_LLM_TIMEOUT", "0s", false},
		{"IDFLOW_LLM_TIMEOUT", "-1m", false}, {"IDFLOW_LLM_TIMEOUT", "soon", false},
		{"IDFLOW_LLM_MAX_RETRIES", "", true}, {"IDFLOW_LLM_MAX_RETRIES", "0", true}, {"IDFLOW_LLM_MAX_RETRIES", "10", true},
		{"IDFLOW_LLM_MAX_RETRIES", "11", false}, {"IDFLOW_LLM_MAX_RETRIES", "-1", false}, {"IDFLOW_LLM_MAX_RETRIES", "x", false},
	} {
		cfg, _, err := loadConfig("serve", nil, func(k string) string {
			if k == tc.env {
				return tc.value
			}
			return ""
		}, io.Discard)
		switch {
		case !tc.ok && (err == nil || !strings.Contains(err.Error(), tc.env)):
			t.Errorf("%s=%q: %v; want refused", tc.env, tc.value, err)
		case tc.ok && err != nil:
			t.Errorf("%s=%q: %v", tc.env, tc.value, err)
		case tc.ok && tc.value == "" && (cfg.llmTimeout != 2*time.Minute || cfg.llmMaxRetries != 2):
			t.Errorf("defaults: %v, %d", cfg.llmTimeout, cfg.llmMaxRetries)
		}
	}
}

// TestAgentConfig: the agent turn's settings default as docs/AGENTS.md
// says and refuse anything out of range.
func TestAgentConfig(t *testing.T) {
	cfg, _, err := loadConfig("serve", nil, func(string) string { return "" }, io.Discard)
	if err != nil || cfg.agentMaxSteps != 8 || cfg.agentMemoryK != 5 || cfg.agentHistoryTokens != 8000 || cfg.agentTurnTimeout != 5*time.Minute {
		t.Fatalf("defaults: %+v, %v", cfg, err)
	}
	for _, tc := range []struct{ env, value string }{
		{"IDFLOW_AGENT_MAX_STEPS", "0"}, {"IDFLOW_AGENT_MAX_STEPS", "65"}, {"IDFLOW_AGENT_MAX_STEPS", "x"},
		{"IDFLOW_AGENT_MEMORY_K", "-1"}, {"IDFLOW_AGENT_MEMORY_K", "51"},
		{"IDFLOW_AGENT_HISTORY_TOKENS", "-5"}, {"IDFLOW_AGENT_HISTORY_TOKENS", "1000001"},
		{"IDFLOW_AGENT_TURN_TIMEOUT", "0s"}, {"IDFLOW_AGENT_TURN_TIMEOUT", "soon"},
	} {
		_, _, err := loadConfig("serve", nil, func(k string) string {
			if k == tc.env {
				return tc.value
			}
			return ""
		}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.env) {
			t.Errorf("%s=%q: %v; want refused", tc.env, tc.value, err)
		}
	}
	if noneIfZero(0) >= 0 || noneIfZero(3) != 3 {
		t.Fatal("0 must reach the service as none")
	}
}
