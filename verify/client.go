package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

// maxBody bounds what is read of one answer; leak checks see all of it.
const maxBody = 8 << 20

// maxShownBody bounds a body shown in the report.
const maxShownBody = 16 << 10

// requestTimeout bounds one request; agent turns get turnTimeout.
const (
	requestTimeout = time.Minute
	turnTimeout    = 5 * time.Minute
)

// client sends the verifier's requests: at most rate per second (the
// limiter), each recorded as a redacted Exchange.
type client struct {
	base  *url.URL
	hc    *http.Client
	lim   *rate.Limiter
	now   func() time.Time
	sleep func(context.Context, time.Duration) error
	red   *redactor

	// onSend sees the text of every request a caller sends (path and
	// body), so the leak checks know which of A's ids it named itself.
	onSend func(c *caller, text string)
	sent   int
}

// Exchange is one request and its answer, redacted.
type Exchange struct {
	Caller          string   `json:"caller"`
	Method          string   `json:"method"`
	URL             string   `json:"url"`
	RequestHeaders  []string `json:"request_headers,omitempty"`
	RequestBody     string   `json:"request_body,omitempty"`
	Status          int      `json:"status,omitempty"`
	ResponseHeaders []string `json:"response_headers,omitempty"`
	ResponseBody    string   `json:"response_body,omitempty"`
	Error           string   `json:"error,omitempty"`
}

// response is an answer read whole.
type response struct {
	status int
	header http.Header
	body   []byte
	ex     Exchange
}

func (r *response) String() string { return fmt.Sprintf("%d %s", r.status, http.StatusText(r.status)) }

// wait blocks until the rate limit allows one more request.
func (cl *client) wait(ctx context.Context) error {
	now := cl.now()
	d := cl.lim.ReserveN(now, 1).DelayFrom(now)
	if d <= 0 {
		return nil
	}
	return cl.sleep(ctx, d)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// header is one extra request header.
type header struct{ name, value string }

// do sends one request as c. body is nil, []byte or string (sent as is,
// as JSON), or a value sent as its JSON.
func (cl *client) do(ctx context.Context, c *caller, method, path string, body any, hdrs ...header) (*response, error) {
	var raw []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
	case string:
		raw = []byte(b)
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			return nil, err
		}
	}
	u := cl.base.JoinPath() // a copy
	ref, err := url.Parse(path)
	if err != nil {
		return nil, err
	}
	u = u.ResolveReference(ref)
	timeout := requestTimeout
	if method == http.MethodPost && (strings.HasSuffix(ref.Path, "/messages") || ref.Path == "/mcp") {
		timeout = turnTimeout // an agent turn, or a tool that runs one
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	newRequest := func() (*http.Request, error) {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(raw)
		}
		req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
		if err != nil {
			return nil, err
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		for _, h := range hdrs {
			req.Header.Set(h.name, h.value)
		}
		return req, nil
	}
	req, err := newRequest()
	if err != nil {
		return nil, err
	}
	if cl.onSend != nil {
		cl.onSend(c, path+" "+string(raw))
	}
	ex := Exchange{Caller: c.Name, Method: method, URL: cl.red.String(u.String()),
		RequestHeaders: cl.red.headers(req.Header), RequestBody: cl.shown(raw)}
	var resp *http.Response
	for attempt := 0; ; attempt++ {
		if err := cl.wait(ctx); err != nil {
			return nil, err
		}
		cl.sent++
		if resp, err = cl.hc.Do(req); err != nil {
			ex.Error = cl.red.String(err.Error())
			return &response{ex: ex}, fmt.Errorf("%s %s: %s", method, ref.Path, ex.Error)
		}
		// The server's rate limit (per caller; per address without
		// credentials) answered: wait as it says and ask again, a few times.
		delay, limited := retryAfter(resp)
		if !limited || attempt == max429Retries {
			break
		}
		_ = resp.Body.Close()
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		if req, err = newRequest(); err != nil {
			return nil, err
		}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	r := &response{status: resp.StatusCode, header: resp.Header, body: data}
	ex.Status = resp.StatusCode
	ex.ResponseHeaders = cl.red.headers(resp.Header)
	ex.ResponseBody = cl.shown(data)
	r.ex = ex
	if err != nil {
		r.ex.Error = cl.red.String(err.Error())
		return r, fmt.Errorf("%s %s: reading the answer: %s", method, ref.Path, r.ex.Error)
	}
	return r, nil
}

// max429Retries is how often a request the server rate-limited is sent
// again (after its Retry-After, at most maxRetryAfter).
const (
	max429Retries = 5
	maxRetryAfter = 10 * time.Second
)

// retryAfter reports whether resp is a 429 to retry, and after how long.
func retryAfter(resp *http.Response) (time.Duration, bool) {
	if resp.StatusCode != http.StatusTooManyRequests {
		return 0, false
	}
	secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || secs < 0 {
		secs = 1
	}
	return min(time.Duration(secs)*time.Second, maxRetryAfter), true
}

// shown is a body as the report shows it: redacted, bounded.
func (cl *client) shown(b []byte) string {
	s := string(b)
	if len(s) > maxShownBody {
		s = s[:maxShownBody] + "\n… (" + fmt.Sprint(len(b)-maxShownBody) + " more bytes)"
	}
	return cl.red.String(s)
}

// errStatus is an unexpected status of a request the verifier needs.
type errStatus struct {
	what string
	r    *response
}

func (e *errStatus) Error() string {
	return fmt.Sprintf("%s: %d %s", e.what, e.r.status, firstLine(e.r.ex.ResponseBody))
}

// need sends a request that must answer want, decoding JSON into out.
func (cl *client) need(ctx context.Context, c *caller, what string, want int, out any, method, path string, body any, hdrs ...header) (*response, error) {
	r, err := cl.do(ctx, c, method, path, body, hdrs...)
	if err != nil {
		return r, fmt.Errorf("%s: %w", what, err)
	}
	if r.status != want {
		return r, &errStatus{what: what, r: r}
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			return r, fmt.Errorf("%s: the answer is not the expected JSON: %w", what, err)
		}
	}
	return r, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// exchangeOf returns the exchange of a failed need, if it got one.
func exchangeOf(r *response) []Exchange {
	if r == nil {
		return nil
	}
	return []Exchange{r.ex}
}
