package fleetd

// This file owns the Client: its options, and the one request path every API call
// takes (URL, bearer token, JSON in and out, error bodies, retries).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// apiPrefix is where the admin API's job endpoints live on a daemon; workflows and
// templates have their own.
const (
	apiPrefix       = "/api/v1/admin/jobs"
	workflowsPrefix = "/api/v1/admin/workflows"
	templatesPrefix = "/api/v1/admin/templates"
)

// defaultTimeout caps one HTTP exchange when the caller gives no http.Client of its
// own: a daemon answers within [http] redis_timeout (1.5 s by default) or says 503, so
// a minute only elapses when the network itself is stuck. Contexts set tighter limits.
const defaultTimeout = 60 * time.Second

// maxResponseBytes bounds what one answer may hold: a listing page is at most 500 jobs
// whose data was accepted under the daemon's body limit (256 KiB each by default), so
// 128 MiB is room for the largest page while a broken proxy cannot exhaust memory.
const maxResponseBytes = 128 << 20

// userAgent names this client in the daemon's access logs.
const userAgent = "fleetd-go-client/1"

// Client calls one fleetd daemon's admin API. It is safe for concurrent use.
type Client struct {
	base      string
	token     string
	http      *http.Client
	retry     RetryPolicy
	userAgent string
}

// Option configures a Client.
type Option func(*Client)

// WithToken sends token as the bearer token of every request (`fleetd token` mints
// one; a token with a company_id claim sees only that company's jobs).
func WithToken(token string) Option {
	return func(c *Client) { c.token = token }
}

// WithHTTPClient uses hc for every request (TLS settings, proxies, transports).
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.http = hc }
}

// WithRetryPolicy replaces DefaultRetryPolicy; RetryPolicy{MaxAttempts: 1} never retries.
func WithRetryPolicy(p RetryPolicy) Option {
	return func(c *Client) { c.retry = p }
}

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option {
	return func(c *Client) { c.userAgent = ua }
}

// New returns a client of the daemon at baseURL, e.g. "http://127.0.0.1:8080" (a path
// is kept, for a daemon behind a proxy at "https://ops.example.com/fleetd").
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("fleetd: base URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("fleetd: base URL %q: want http(s)://host[:port][/path]", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("fleetd: base URL %q: no query or fragment allowed", baseURL)
	}
	c := &Client{
		base:      strings.TrimRight(u.String(), "/"),
		http:      &http.Client{Timeout: defaultTimeout},
		retry:     DefaultRetryPolicy,
		userAgent: userAgent,
	}
	for _, opt := range opts {
		opt(c)
	}
	return c, nil
}

// call is one API request: method, path under prefix (apiPrefix when empty; the path
// already escaped), query, JSON body (nil for none) and extra headers.
type call struct {
	prefix string
	method string
	path   string
	query  url.Values
	body   any
	header http.Header
}

// do sends c, retrying as the policy allows, and decodes a 2xx answer into out (when
// not nil). Any other answer is an *Error.
func (c *Client) do(ctx context.Context, r call, out any) error {
	var payload []byte
	if r.body != nil {
		var err error
		if payload, err = json.Marshal(r.body); err != nil {
			return fmt.Errorf("fleetd: encoding the request: %w", err)
		}
	}
	prefix := r.prefix
	if prefix == "" {
		prefix = apiPrefix
	}
	target := c.base + prefix + r.path
	if len(r.query) > 0 {
		target += "?" + r.query.Encode()
	}
	for attempt := 1; ; attempt++ {
		status, body, header, err := c.send(ctx, r, target, payload)
		if err != nil {
			return err
		}
		if status >= 200 && status < 300 {
			if out == nil || len(body) == 0 {
				return nil
			}
			if err := json.Unmarshal(body, out); err != nil {
				return fmt.Errorf("fleetd: %s %s: decoding the answer: %w", r.method, r.path, err)
			}
			return nil
		}
		apiErr := newError(status, header, body)
		wait, again := c.retry.next(attempt, apiErr)
		if !again {
			return apiErr
		}
		// No point sleeping past the caller's deadline: say what the daemon said now.
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			return apiErr
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
	}
}

// send makes one HTTP exchange and reads the whole answer.
func (c *Client) send(
	ctx context.Context, r call, target string, payload []byte,
) (int, []byte, http.Header, error) {
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, target, body)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("fleetd: %w", err)
	}
	for name, values := range r.header {
		req.Header[name] = values
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("fleetd: %s %s: %w", r.method, r.path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("fleetd: %s %s: reading the answer: %w", r.method, r.path, err)
	}
	if len(data) > maxResponseBytes {
		return 0, nil, nil, errors.New("fleetd: answer larger than 128 MiB")
	}
	return resp.StatusCode, data, resp.Header, nil
}
