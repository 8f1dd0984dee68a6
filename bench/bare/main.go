// Command bare is the yardstick of bench/http.sh: a net/http server with
// one handler that answers every request with a small JSON body, as idflow's
// /healthz does, and nothing else — no middleware, no log, no
// authentication. What idflow costs on top of it is what bench/http.sh
// reports as a ratio.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:39081", "listen address")
	flag.Parse()
	body := []byte(`{"status":"ok"}` + "\n")
	srv := &http.Server{
		Addr:              *addr,
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(body)
		}),
	}
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "bare:", err)
		os.Exit(1)
	}
}
