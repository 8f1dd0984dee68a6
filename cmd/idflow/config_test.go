package main

import (
	"io"
	"os"
	"strings"
	"testing"
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
