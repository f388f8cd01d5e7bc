package fleetd

// This file owns the job calls of the Client: enqueue (one or many), get, list by
// status, cancel, reset, queue statistics and cleanup, with their answer types.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// EnqueueOption adjusts one Enqueue or EnqueueBulk call.
type EnqueueOption func(*enqueueSettings)

type enqueueSettings struct {
	key string
}

// WithIdempotencyKey sends key as the Idempotency-Key header: enqueueing again with
// the same key answers the first job (Duplicate true) for as long as that job is kept.
// For EnqueueBulk the i-th job gets the key "<key>:<i>".
func WithIdempotencyKey(key string) EnqueueOption {
	return func(s *enqueueSettings) { s.key = key }
}

// autoKeyBytes of randomness make the key a retried enqueue carries when the caller
// gave none: 128 bits, so two calls never share one.
const autoKeyBytes = 16

// autoKey returns a fresh Idempotency-Key. After a 503 the outcome of an enqueue is
// unknown (the daemon may have reached Redis just before its timeout); with a key, the
// retry answers that job rather than enqueueing it a second time.
func autoKey() (string, error) {
	b := make([]byte, autoKeyBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("fleetd: making an idempotency key: %w", err)
	}
	return "auto-" + hex.EncodeToString(b), nil
}

func keyHeader(opts []EnqueueOption, needKey bool) (http.Header, error) {
	var s enqueueSettings
	for _, opt := range opts {
		opt(&s)
	}
	if s.key == "" && needKey {
		var err error
		if s.key, err = autoKey(); err != nil {
			return nil, err
		}
	}
	if s.key == "" {
		return nil, nil
	}
	return http.Header{"Idempotency-Key": {s.key}}, nil
}

// Enqueue adds one job (POST /enqueue). When neither the request nor an option gives
// an idempotency key, the client makes one up so that its own retries are safe.
func (c *Client) Enqueue(ctx context.Context, req EnqueueRequest, opts ...EnqueueOption) (*Enqueued, error) {
	header, err := keyHeader(opts, req.IdempotencyKey == "")
	if err != nil {
		return nil, err
	}
	var out Enqueued
	err = c.do(ctx, call{method: http.MethodPost, path: "/enqueue", body: req, header: header}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// EnqueueBulk adds many jobs in one request (POST /enqueue/bulk): all of them or, when
// any is refused, none (the 422 lists every refused field as "jobs[i].field"). The
// answers come in request order. A key is made up as for Enqueue when no job carries
// its own.
func (c *Client) EnqueueBulk(
	ctx context.Context, reqs []EnqueueRequest, opts ...EnqueueOption,
) ([]Enqueued, error) {
	if len(reqs) == 0 {
		return nil, errors.New("fleetd: EnqueueBulk needs at least one job")
	}
	needKey := true
	for _, r := range reqs {
		if r.IdempotencyKey != "" {
			needKey = false
		}
	}
	header, err := keyHeader(opts, needKey)
	if err != nil {
		return nil, err
	}
	var out struct {
		Jobs []Enqueued `json:"jobs"`
	}
	body := map[string][]EnqueueRequest{"jobs": reqs}
	err = c.do(ctx, call{method: http.MethodPost, path: "/enqueue/bulk", body: body, header: header}, &out)
	if err != nil {
		return nil, err
	}
	return out.Jobs, nil
}

// Get returns one job (GET /{id}); IsNotFound(err) when there is none.
func (c *Client) Get(ctx context.Context, id string) (*Job, error) {
	var out struct {
		Job Job `json:"job"`
	}
	if err := c.do(ctx, call{method: http.MethodGet, path: "/" + url.PathEscape(id)}, &out); err != nil {
		return nil, err
	}
	return &out.Job, nil
}

// ListOptions narrow ListByStatus.
type ListOptions struct {
	// Limit is the page size, 1 to 500 (0: the daemon's 50).
	Limit int
	// Cursor continues from JobPage.NextCursor of the previous page.
	Cursor string
	// Type keeps only jobs of this job type.
	Type string
	// UserID keeps only jobs of this user (the spec's user-specific job tracking).
	UserID string
	// Search keeps only jobs whose id, type, company or user holds this text
	// (case-insensitive).
	Search string
}

// JobPage is one page of a listing, newest first.
type JobPage struct {
	Jobs   []Job     `json:"jobs"`
	Status JobStatus `json:"status"`
	Count  int       `json:"count"`
	Limit  int       `json:"limit"`
	// NextCursor fetches the next page; empty on the last one.
	NextCursor string `json:"next_cursor"`
}

// ListByStatus returns a page of the jobs in one status (GET /status/{status}); opts
// may be nil.
func (c *Client) ListByStatus(ctx context.Context, status JobStatus, opts *ListOptions) (*JobPage, error) {
	q := url.Values{}
	if opts != nil {
		q = pageQuery(opts.Limit, opts.Cursor)
		if opts.Type != "" {
			q.Set("type", opts.Type)
		}
		if opts.UserID != "" {
			q.Set("user_id", opts.UserID)
		}
		if opts.Search != "" {
			q.Set("q", opts.Search)
		}
	}
	var out JobPage
	r := call{method: http.MethodGet, path: "/status/" + url.PathEscape(string(status)), query: q}
	if err := c.do(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// pageQuery is the query of one page of a listing: limit (0: the daemon's default) and
// cursor ("": the first page).
func pageQuery(limit int, cursor string) url.Values {
	q := url.Values{}
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	return q
}

// CancelResult is the answer of Cancel.
type CancelResult struct {
	JobID  string    `json:"job_id"`
	Status JobStatus `json:"status"`
	// Cancelled is true once the job is cancelled.
	Cancelled bool `json:"cancelled"`
	// CancelRequested is true for a running job: its daemon was told to stop it, and
	// it turns cancelled when the handler has stopped.
	CancelRequested bool `json:"cancel_requested,omitempty"`
}

// Cancel cancels a job (DELETE /{id}): a pending, retrying or delayed one at once, a
// running one through the daemon that runs it. A finished job answers 409
// (IsConflict), with its status in Details["status"].
func (c *Client) Cancel(ctx context.Context, id string) (*CancelResult, error) {
	var out CancelResult
	if err := c.do(ctx, call{method: http.MethodDelete, path: "/" + url.PathEscape(id)}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ResetResult is the answer of Reset.
type ResetResult struct {
	JobID  string    `json:"job_id"`
	Status JobStatus `json:"status"`
	Reset  bool      `json:"reset"`
}

// Reset puts a failed or cancelled job back to pending, retry count zero
// (POST /{id}/reset); a job in any other status answers 409 (IsConflict). The job
// counts as one enqueued for its company: over the company's quota the answer is 429
// with Code "quota_exceeded" (Details: company_id, quota, limit) and RetryAfter,
// nothing changed; it is retried as the RetryPolicy allows, then returned.
func (c *Client) Reset(ctx context.Context, id string) (*ResetResult, error) {
	var out ResetResult
	if err := c.do(ctx, call{method: http.MethodPost, path: "/" + url.PathEscape(id) + "/reset"}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// QueueStats counts the jobs in each status (the spec's stats, all six statuses).
type QueueStats struct {
	Pending    int64 `json:"pending"`
	Processing int64 `json:"processing"`
	Completed  int64 `json:"completed"`
	Failed     int64 `json:"failed"`
	Retrying   int64 `json:"retrying"`
	Cancelled  int64 `json:"cancelled"`
	Total      int64 `json:"total"`
}

// Stats counts the queue's jobs by status (GET /stats); a company-bound token gets
// 403, as the counts span every company.
func (c *Client) Stats(ctx context.Context) (*QueueStats, error) {
	var out struct {
		Stats QueueStats `json:"stats"`
	}
	if err := c.do(ctx, call{method: http.MethodGet, path: "/stats"}, &out); err != nil {
		return nil, err
	}
	return &out.Stats, nil
}

// CleanupResult is the answer of Cleanup.
type CleanupResult struct {
	Deleted   int64
	OlderThan time.Duration
	// ByStatus counts the deleted jobs of each finished status.
	ByStatus map[JobStatus]int64
	// Workflows counts the finished workflows deleted with their nodes' jobs (which
	// Deleted includes).
	Workflows int64
}

// Cleanup deletes completed, failed and cancelled jobs that finished more than
// olderThan ago (POST /cleanup?older_than=…); platform admins only.
func (c *Client) Cleanup(ctx context.Context, olderThan time.Duration) (*CleanupResult, error) {
	if olderThan < 0 {
		return nil, errors.New("fleetd: Cleanup needs a duration >= 0")
	}
	var out struct {
		Deleted   int64               `json:"deleted"`
		OlderThan string              `json:"older_than"`
		ByStatus  map[JobStatus]int64 `json:"by_status"`
		Workflows int64               `json:"workflows"`
	}
	q := url.Values{"older_than": {formatDuration(olderThan)}}
	if err := c.do(ctx, call{method: http.MethodPost, path: "/cleanup", query: q}, &out); err != nil {
		return nil, err
	}
	d, err := time.ParseDuration(out.OlderThan)
	if err != nil {
		return nil, fmt.Errorf("fleetd: cleanup answer: %w", err)
	}
	return &CleanupResult{Deleted: out.Deleted, OlderThan: d, ByStatus: out.ByStatus, Workflows: out.Workflows}, nil
}

// formatDuration writes d in fleetd's duration syntax, to the millisecond (the
// daemon's resolution; its syntax has no µs or ns): "500ms", "1.5s", "1h30m0s".
func formatDuration(d time.Duration) string {
	return d.Round(time.Millisecond).String()
}
