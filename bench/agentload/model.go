package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// holdMarker in a turn's user message makes the model server hold its
// stream after the first chunk until POST /bench/release.
const holdMarker = "[hold]"

// modelServer is a stand-in OpenAI-compatible Chat Completions server: it
// answers every request with the same reply, streamed in chunks (OpenAI's
// chunk format, usage in a last chunk when asked), the first one at once
// (or after firstDelay) and the next every interval. Its chunks are encoded
// once, so it costs little CPU next to what it serves.
type modelServer struct {
	firstDelay, interval time.Duration
	chunks               [][]byte // "data: {…}\n\n" each
	finish, usage        []byte
	reply                string

	streams, held atomic.Int64
	mu            sync.Mutex
	release       chan struct{} // closed by /bench/release; then replaced
}

func cmdModel(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("model", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:18181", "address")
	n := fs.Int("chunks", 20, "content chunks of the reply")
	interval := fs.Duration("interval", 50*time.Millisecond, "time between chunks")
	first := fs.Duration("first-delay", 0, "time before the first chunk")
	_ = fs.Parse(args)
	m := newModelServer(*n, *first, *interval)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", m.complete)
	mux.HandleFunc("POST /bench/release", m.releaseAll)
	mux.HandleFunc("GET /bench/stats", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]int64{"streams": m.streams.Load(), "held": m.held.Load()})
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0)}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	fmt.Printf("model server on http://%s/v1: %d chunks, first after %s, then every %s\n", *listen, *n, *first, *interval)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func newModelServer(n int, firstDelay, interval time.Duration) *modelServer {
	m := &modelServer{firstDelay: firstDelay, interval: interval, release: make(chan struct{})}
	chunk := func(delta map[string]any, finish any, usage any) []byte {
		c := map[string]any{"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": "bench",
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}}
		if usage != nil {
			c["choices"] = []any{}
			c["usage"] = usage
		}
		b, _ := json.Marshal(c) // maps of strings and numbers always encode
		return []byte("data: " + string(b) + "\n\n")
	}
	var words []string
	for i := range max(n, 1) {
		w := fmt.Sprintf("word%02d ", i)
		words = append(words, w)
		d := map[string]any{"content": w}
		if i == 0 {
			d["role"] = "assistant"
		}
		m.chunks = append(m.chunks, chunk(d, nil, nil))
	}
	m.reply = strings.Join(words, "")
	m.finish = chunk(map[string]any{}, "stop", nil)
	m.usage = chunk(nil, nil, map[string]int{"prompt_tokens": 20, "completion_tokens": len(words), "total_tokens": 20 + len(words)})
	return m
}

// chatRequest is what the server reads of a request.
type chatRequest struct {
	Stream        bool `json:"stream"`
	StreamOptions struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
}

func (m *modelServer) complete(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 8<<20)).Decode(&req); err != nil {
		http.Error(w, `{"error":{"message":"bad request"}}`, http.StatusBadRequest)
		return
	}
	hold := false
	if k := len(req.Messages); k > 0 && strings.Contains(string(req.Messages[k-1].Content), holdMarker) {
		hold = true
	}
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "bench",
			"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": m.reply}, "finish_reason": "stop"}},
			"usage":   map[string]int{"prompt_tokens": 20, "completion_tokens": len(m.chunks), "total_tokens": 20 + len(m.chunks)}})
		return
	}
	m.streams.Add(1)
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	ctx := r.Context()
	wait := func(d time.Duration) bool {
		if d <= 0 {
			return ctx.Err() == nil
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	send := func(b []byte) bool {
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !wait(m.firstDelay) {
		return
	}
	for i, c := range m.chunks {
		if i == 0 {
			c = m.stamped()
		}
		if i > 0 && !wait(m.interval) || !send(c) {
			return
		}
		if i == 0 && hold {
			m.mu.Lock()
			release := m.release
			m.mu.Unlock()
			m.held.Add(1)
			select {
			case <-release:
			case <-ctx.Done():
			}
			m.held.Add(-1)
		}
	}
	if !send(m.finish) {
		return
	}
	if req.StreamOptions.IncludeUsage && !send(m.usage) {
		return
	}
	send([]byte("data: [DONE]\n\n"))
}

// stamped is the first chunk, its text prefixed with the time it is sent
// ("@<unix ns> "), so that a client can tell the time to the model from
// the time back.
func (m *modelServer) stamped() []byte {
	return []byte(strings.Replace(string(m.chunks[0]), `"content":"`, `"content":"@`+strconv.FormatInt(time.Now().UnixNano(), 10)+" ", 1))
}

// releaseAll lets every held stream go on to its end.
func (m *modelServer) releaseAll(w http.ResponseWriter, _ *http.Request) {
	m.mu.Lock()
	close(m.release)
	m.release = make(chan struct{})
	m.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}
