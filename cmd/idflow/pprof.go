//go:build pprof

// A build for profiling only (bench/http.sh PROFILE=…): `go build -tags
// pprof` serves net/http/pprof on IDFLOW_PPROF_ADDR, which must be a
// loopback address, beside the API. The production binary has none of this.
package main

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	addr := os.Getenv("IDFLOW_PPROF_ADDR")
	if addr == "" {
		return
	}
	if host, _, err := net.SplitHostPort(addr); err != nil || !net.ParseIP(host).IsLoopback() {
		fmt.Fprintf(os.Stderr, "idflow: IDFLOW_PPROF_ADDR %q is not a loopback address\n", addr)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "idflow: pprof:", err)
		os.Exit(2)
	}
	go func() { _ = http.Serve(ln, http.DefaultServeMux) }()
}
