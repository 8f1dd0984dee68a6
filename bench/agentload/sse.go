package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// turnResult is one streamed turn as a client saw it.
type turnResult struct {
	TTFT    time.Duration // request start → first text (an idflow delta, a model chunk with content)
	ToModel time.Duration // request start → the model server sent its first chunk (its stamp)
	Message time.Duration // idflow: request start → the message event
	Memory  time.Duration // idflow: request start → the memory event
	Total   time.Duration // request start → the end of the stream
	Err     error
}

// stampOf reads the model server's send time from the start of the first
// text ("@<unix ns> ") and answers it relative to start.
func stampOf(text string, start time.Time) time.Duration {
	v, _, ok := strings.Cut(strings.TrimPrefix(text, "@"), " ")
	if !ok || !strings.HasPrefix(text, "@") {
		return 0
	}
	ns, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0
	}
	return time.Duration(ns - start.UnixNano())
}

// streamTurn posts an idflow agent turn with Accept: text/event-stream and
// reads its events to `done`. firstDelta, if not nil, is called when the
// first delta arrives.
func streamTurn(ctx context.Context, hc *http.Client, base, token, session, content string, firstDelta func()) turnResult {
	body, _ := json.Marshal(map[string]string{"content": content}) // a string always encodes
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/api/v1/sessions/"+session+"/messages", bytes.NewReader(body))
	if err != nil {
		return turnResult{Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	start := time.Now()
	var res turnResult
	err = readSSE(hc, req, func(event string, data []byte) (bool, error) {
		switch event {
		case "message":
			res.Message = time.Since(start)
		case "memory":
			res.Memory = time.Since(start)
		case "delta":
			if res.TTFT == 0 {
				res.TTFT = time.Since(start)
				var d struct {
					Text string `json:"text"`
				}
				if err := json.Unmarshal(data, &d); err != nil {
					return false, err
				}
				res.ToModel = stampOf(d.Text, start)
				if firstDelta != nil {
					firstDelta()
				}
			}
		case "error":
			return false, fmt.Errorf("error event: %s", data)
		case "done":
			return true, nil
		}
		return false, nil
	})
	res.Total = time.Since(start)
	if err == nil && res.TTFT == 0 {
		err = fmt.Errorf("the turn ended without a delta")
	}
	res.Err = err
	return res
}

// directTurn asks the model server itself for a streamed chat completion,
// as a client of the model would, and reads it to [DONE].
func directTurn(ctx context.Context, hc *http.Client, base, content string) turnResult {
	body, _ := json.Marshal(map[string]any{ // maps of strings and bools always encode
		"model": "bench", "stream": true, "stream_options": map[string]bool{"include_usage": true},
		"messages": []map[string]string{{"role": "user", "content": content}}, "user": "u_agentload",
	})
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/chat/completions", bytes.NewReader(body))
	if err != nil {
		return turnResult{Err: err}
	}
	req.Header.Set("Authorization", "Bearer sk-agentload")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	start := time.Now()
	var res turnResult
	err = readSSE(hc, req, func(_ string, data []byte) (bool, error) {
		if bytes.Equal(data, []byte("[DONE]")) {
			return true, nil
		}
		if res.TTFT == 0 {
			var c struct {
				Choices []struct {
					Delta struct {
						Content string `json:"content"`
					} `json:"delta"`
				} `json:"choices"`
			}
			if err := json.Unmarshal(data, &c); err != nil {
				return false, err
			}
			if len(c.Choices) > 0 && c.Choices[0].Delta.Content != "" {
				res.TTFT = time.Since(start)
				res.ToModel = stampOf(c.Choices[0].Delta.Content, start)
			}
		}
		return false, nil
	})
	res.Total = time.Since(start)
	if err == nil && res.TTFT == 0 {
		err = fmt.Errorf("the stream ended without content")
	}
	res.Err = err
	return res
}

// readSSE sends req and hands each event (its name, its data) to on until
// on reports the end, the body ends, or on fails.
func readSSE(hc *http.Client, req *http.Request, on func(event string, data []byte) (end bool, err error)) error {
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 16<<10), 4<<20)
	event := ""
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			event = ""
		case bytes.HasPrefix(line, []byte("event:")):
			event = string(bytes.TrimSpace(line[len("event:"):]))
		case bytes.HasPrefix(line, []byte("data:")):
			end, err := on(event, bytes.TrimSpace(line[len("data:"):]))
			if err != nil {
				return err
			}
			if end {
				// Read to the body's end, so the connection is kept alive.
				_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
				return nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF
}
