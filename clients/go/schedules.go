package fleetd

// This file owns the scheduled jobs: the spec's ScheduledJob, what a create or an
// update asks for, the scheduler's statistics, and the Client's calls for them
// (under /scheduled).

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// MisfirePolicy says what a schedule does about occurrences missed while no scheduler
// ran: run the latest one once, or skip them all.
type MisfirePolicy string

// The misfire policies.
const (
	MisfireRunOnce MisfirePolicy = "run_once"
	MisfireSkip    MisfirePolicy = "skip"
)

// ScheduledJob is a schedule as the API shows it: the spec's fields, then fleetd's
// extensions.
type ScheduledJob struct {
	ID       string         `json:"id"`
	Name     string         `json:"name"`
	JobType  string         `json:"job_type"`
	Data     map[string]any `json:"data"`
	Schedule string         `json:"schedule"`
	Priority JobPriority    `json:"priority"`
	IsActive bool           `json:"is_active"`
	LastRun  *time.Time     `json:"last_run,omitempty"`
	// NextRun is the next occurrence; zero while the schedule is paused.
	NextRun   time.Time `json:"next_run"`
	CompanyID string    `json:"company_id,omitempty"`
	UserID    string    `json:"user_id,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`

	// Timezone (IANA name) in which calendar schedules such as @daily are read.
	Timezone      string        `json:"timezone"`
	MisfirePolicy MisfirePolicy `json:"misfire_policy"`
	// Runs counts the jobs the schedule enqueued; Missed the occurrences it skipped.
	Runs      int    `json:"runs"`
	Missed    int    `json:"missed"`
	LastJobID string `json:"last_job_id,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// Encrypt is true when Data is sealed at rest (then shown redacted, Encrypted).
	Encrypt   bool `json:"encrypt,omitempty"`
	Encrypted bool `json:"encrypted,omitempty"`
}

// ScheduledJobRequest is what CreateScheduledJob asks for: the spec's create body plus
// fleetd's extensions. Zero fields take the defaults.
type ScheduledJobRequest struct {
	// ID chooses a stable id (1-64 of A-Z a-z 0-9 _ . -); empty: the daemon picks one.
	// Only a platform admin token may choose one: a company-bound token gets 422.
	ID      string `json:"id,omitempty"`
	Name    string `json:"name"`
	JobType string `json:"job_type"`
	// Data is what every enqueued job gets, checked against the job type's schema.
	Data map[string]any `json:"data,omitempty"`
	// Schedule: @hourly, @daily, @weekly, @monthly, an interval such as 30m or 1d, or a
	// cron expression such as "0 9 * * 1-5".
	Schedule string `json:"schedule"`
	// Priority 0 takes the job type's default.
	Priority JobPriority `json:"priority,omitempty"`
	// IsActive nil creates an active schedule; Ptr(false) a paused one.
	IsActive  *bool  `json:"is_active,omitempty"`
	CompanyID string `json:"company_id,omitempty"`
	UserID    string `json:"user_id,omitempty"`
	// Timezone empty takes the daemon's default (UTC unless configured).
	Timezone      string        `json:"timezone,omitempty"`
	MisfirePolicy MisfirePolicy `json:"misfire_policy,omitempty"`
	Encrypt       bool          `json:"encrypt,omitempty"`
}

// ScheduledJobUpdate is a partial update: nil fields stay as they are.
type ScheduledJobUpdate struct {
	Name     *string
	JobType  *string
	Data     map[string]any // nil: unchanged; an empty map clears it
	Schedule *string
	Priority *JobPriority
	IsActive *bool
	// CompanyID and UserID: Ptr("") clears them.
	CompanyID     *string
	UserID        *string
	Timezone      *string
	MisfirePolicy *MisfirePolicy
	Encrypt       *bool
}

// MarshalJSON writes only the fields that change.
func (u ScheduledJobUpdate) MarshalJSON() ([]byte, error) {
	out := map[string]any{}
	put := func(name string, set bool, value any) {
		if set {
			out[name] = value
		}
	}
	put("name", u.Name != nil, u.Name)
	put("job_type", u.JobType != nil, u.JobType)
	put("data", u.Data != nil, u.Data)
	put("schedule", u.Schedule != nil, u.Schedule)
	put("priority", u.Priority != nil, u.Priority)
	put("is_active", u.IsActive != nil, u.IsActive)
	put("company_id", u.CompanyID != nil, u.CompanyID)
	put("user_id", u.UserID != nil, u.UserID)
	put("timezone", u.Timezone != nil, u.Timezone)
	put("misfire_policy", u.MisfirePolicy != nil, u.MisfirePolicy)
	put("encrypt", u.Encrypt != nil, u.Encrypt)
	return json.Marshal(out)
}

// Ptr returns a pointer to v, for the optional fields: Ptr(false), Ptr(0).
func Ptr[T any](v T) *T { return &v }

// SchedulerStats is the spec's scheduler statistics plus missed executions.
type SchedulerStats struct {
	TotalScheduledJobs int `json:"total_scheduled_jobs"`
	ActiveJobs         int `json:"active_jobs"`
	InactiveJobs       int `json:"inactive_jobs"`
	// NextRun is the earliest next occurrence of an active schedule; nil when none.
	NextRun          *time.Time `json:"next_run"`
	MissedExecutions int        `json:"missed_executions"`
}

func schedulePath(id string) string { return "/scheduled/" + url.PathEscape(id) }

// CreateScheduledJob adds a schedule (POST /scheduled). A name already used in the same
// company answers 409 (IsConflict).
func (c *Client) CreateScheduledJob(ctx context.Context, req ScheduledJobRequest) (*ScheduledJob, error) {
	return c.scheduleCall(ctx, call{method: http.MethodPost, path: "/scheduled", body: req})
}

// GetScheduledJob returns one schedule (GET /scheduled/{id}); IsNotFound(err) when
// there is none.
func (c *Client) GetScheduledJob(ctx context.Context, id string) (*ScheduledJob, error) {
	return c.scheduleCall(ctx, call{method: http.MethodGet, path: schedulePath(id)})
}

// UpdateScheduledJob changes the given fields of a schedule (PUT /scheduled/{id}) and
// returns it as it now is; a new expression or time zone recomputes NextRun.
func (c *Client) UpdateScheduledJob(
	ctx context.Context, id string, changes ScheduledJobUpdate,
) (*ScheduledJob, error) {
	return c.scheduleCall(ctx, call{method: http.MethodPut, path: schedulePath(id), body: changes})
}

func (c *Client) scheduleCall(ctx context.Context, r call) (*ScheduledJob, error) {
	var out struct {
		ScheduledJob ScheduledJob `json:"scheduled_job"`
	}
	if err := c.do(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out.ScheduledJob, nil
}

// ScheduledJobPage is one page of the schedules, oldest first.
type ScheduledJobPage struct {
	ScheduledJobs []ScheduledJob `json:"scheduled_jobs"`
	// Count is the number of schedules on this page.
	Count int `json:"count"`
	Limit int `json:"limit"`
	// NextCursor fetches the next page; empty on the last one.
	NextCursor string `json:"next_cursor"`
}

// ScheduleListOptions choose a page of ListScheduledJobsPage.
type ScheduleListOptions struct {
	// Limit is the page size, 1 to 500 (0: the daemon's 50).
	Limit int
	// Cursor continues from ScheduledJobPage.NextCursor of the previous page.
	Cursor string
}

// schedulePageSize is the page ListScheduledJobs asks for: the largest the daemon serves.
const schedulePageSize = 500

// ListScheduledJobsPage returns one page of the schedules the token may see, oldest
// first (GET /scheduled?limit=&cursor=); opts may be nil. Schedules created or deleted
// between two pages move no other one: following NextCursor lists each schedule that
// exists throughout exactly once.
func (c *Client) ListScheduledJobsPage(ctx context.Context, opts *ScheduleListOptions) (*ScheduledJobPage, error) {
	q := url.Values{}
	if opts != nil {
		q = pageQuery(opts.Limit, opts.Cursor)
	}
	var out ScheduledJobPage
	if err := c.do(ctx, call{method: http.MethodGet, path: "/scheduled", query: q}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListScheduledJobs returns every schedule the token may see, oldest first: it follows
// the pages of GET /scheduled, 500 schedules a request, until the last one.
func (c *Client) ListScheduledJobs(ctx context.Context) ([]ScheduledJob, error) {
	var all []ScheduledJob
	opts := &ScheduleListOptions{Limit: schedulePageSize}
	for {
		page, err := c.ListScheduledJobsPage(ctx, opts)
		if err != nil {
			return nil, err
		}
		all = append(all, page.ScheduledJobs...)
		if page.NextCursor == "" {
			return all, nil
		}
		if page.NextCursor == opts.Cursor {
			return nil, fmt.Errorf("fleetd: GET /scheduled answered the cursor it was sent (%q) as the next one", page.NextCursor)
		}
		opts.Cursor = page.NextCursor
	}
}

// DeleteScheduledJob removes a schedule (DELETE /scheduled/{id}); jobs it already
// enqueued stay.
func (c *Client) DeleteScheduledJob(ctx context.Context, id string) error {
	return c.do(ctx, call{method: http.MethodDelete, path: schedulePath(id)}, nil)
}

// SchedulerStats counts the schedules the token may see (GET /scheduled/stats).
func (c *Client) SchedulerStats(ctx context.Context) (*SchedulerStats, error) {
	var out struct {
		Stats SchedulerStats `json:"scheduler_stats"`
	}
	if err := c.do(ctx, call{method: http.MethodGet, path: "/scheduled/stats"}, &out); err != nil {
		return nil, err
	}
	return &out.Stats, nil
}
