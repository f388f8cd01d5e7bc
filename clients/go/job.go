package fleetd

// This file owns the job model: the spec's Job, JobStatus and JobPriority, what an
// enqueue asks for (EnqueueRequest) and answers (Enqueued), and their JSON forms.

import (
	"encoding/json"
	"time"
)

// JobStatus is one of the spec's six statuses.
type JobStatus string

// The spec's statuses. A job with a future RunAt is pending until then.
const (
	JobStatusPending    JobStatus = "pending"
	JobStatusProcessing JobStatus = "processing"
	JobStatusCompleted  JobStatus = "completed"
	JobStatusFailed     JobStatus = "failed"
	JobStatusRetrying   JobStatus = "retrying"
	JobStatusCancelled  JobStatus = "cancelled"
)

// JobStatuses lists every status, in the order of the job's life.
var JobStatuses = []JobStatus{
	JobStatusPending, JobStatusProcessing, JobStatusRetrying,
	JobStatusCompleted, JobStatusFailed, JobStatusCancelled,
}

// Terminal reports whether a job in this status stays there (unless it is reset).
func (s JobStatus) Terminal() bool {
	return s == JobStatusCompleted || s == JobStatusFailed || s == JobStatusCancelled
}

// JobPriority orders jobs: a higher number runs first. Any integer from 1 to 20 is
// accepted; these are the spec's four names.
type JobPriority int

// The spec's priorities.
const (
	JobPriorityLow      JobPriority = 1
	JobPriorityNormal   JobPriority = 5
	JobPriorityHigh     JobPriority = 10
	JobPriorityCritical JobPriority = 20
)

// Job is a job as the API shows it: the spec's fields, then fleetd's extensions.
type Job struct {
	ID          string         `json:"id"`
	Type        string         `json:"type"`
	Data        map[string]any `json:"data"`
	Priority    JobPriority    `json:"priority"`
	Status      JobStatus      `json:"status"`
	CreatedAt   time.Time      `json:"created_at"`
	StartedAt   *time.Time     `json:"started_at,omitempty"`
	CompletedAt *time.Time     `json:"completed_at,omitempty"`
	RetryCount  int            `json:"retry_count"`
	MaxRetries  int            `json:"max_retries"`
	Error       string         `json:"error,omitempty"`
	Result      map[string]any `json:"result,omitempty"`
	CompanyID   string         `json:"company_id,omitempty"`
	UserID      string         `json:"user_id,omitempty"`
	Tags        []string       `json:"tags,omitempty"`

	// RunAt is when a delayed job becomes due.
	RunAt *time.Time `json:"run_at,omitempty"`
	// Timeout is the job's own limit per attempt (zero: the daemon's job_timeout).
	Timeout time.Duration `json:"-"`
	// Attempts counts the attempts started, retries and stalls included.
	Attempts int `json:"attempts"`
	// Stalls counts the times the job was recovered from a daemon that died.
	Stalls         int            `json:"stalls,omitempty"`
	IdempotencyKey string         `json:"idempotency_key,omitempty"`
	Worker         string         `json:"worker,omitempty"`
	Progress       map[string]any `json:"progress,omitempty"`
	Traceback      string         `json:"traceback,omitempty"`
	UpdatedAt      *time.Time     `json:"updated_at,omitempty"`
	// CancelRequested is true while a running job is being cancelled.
	CancelRequested bool `json:"cancel_requested,omitempty"`
	// Encrypted is true when some or all of Data is sealed at rest (shown redacted).
	Encrypted bool `json:"encrypted,omitempty"`
	// Queue is the named queue the job waits in ("default" unless routed).
	Queue string `json:"queue,omitempty"`
}

// jobJSON is Job with the timeout as the API writes it: seconds, a number.
type jobJSON struct {
	jobFields
	Timeout float64 `json:"timeout,omitempty"`
}

type jobFields Job // Job without its methods: no recursion in (Un)MarshalJSON

// UnmarshalJSON reads the API's job object.
func (j *Job) UnmarshalJSON(b []byte) error {
	var aux jobJSON
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*j = Job(aux.jobFields)
	j.Timeout = seconds(aux.Timeout)
	return nil
}

// MarshalJSON writes the API's job object.
func (j Job) MarshalJSON() ([]byte, error) {
	return json.Marshal(jobJSON{jobFields(j), j.Timeout.Seconds()})
}

// EnqueueRequest is what Enqueue asks for: the spec's enqueue body plus fleetd's
// extensions. Zero fields take the daemon's defaults.
type EnqueueRequest struct {
	// Type is the job type, e.g. "report_generation" (required).
	Type string `json:"type"`
	// Data is checked against the job type's schema (a 422 names the bad field).
	Data map[string]any `json:"data,omitempty"`
	// Priority 0 takes the job type's default priority.
	Priority JobPriority `json:"priority,omitempty"`
	// MaxRetries nil takes the job type's default (3); Ptr(0) never retries.
	MaxRetries *int `json:"max_retries,omitempty"`
	// Timeout 0 takes the job type's or the daemon's limit per attempt.
	Timeout time.Duration `json:"-"`
	// CompanyID is forced to the token's company for a company-bound token.
	CompanyID string `json:"company_id,omitempty"`
	// UserID defaults to the token's subject.
	UserID string   `json:"user_id,omitempty"`
	Tags   []string `json:"tags,omitempty"`
	// RunAt delays the job until then (nil: run as soon as a worker is free).
	RunAt *time.Time `json:"-"`
	// IdempotencyKey: a second enqueue with the same key answers the first job
	// (Duplicate true) instead of enqueueing another. WithIdempotencyKey sets the
	// header instead; giving both, they must be equal.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// Encrypt seals the whole Data at rest; the API then shows it redacted.
	Encrypt bool `json:"encrypt,omitempty"`
	// Queue is the named queue ("" takes the job type's route, else "default").
	Queue string `json:"queue,omitempty"`
	// Fallback FallbackSync runs the job on the daemon at once while the queue is
	// unavailable (types that declare sync_fallback only); the answer is then 200
	// with Ran "sync" and the job's outcome. No effect while Redis answers.
	Fallback Fallback `json:"fallback,omitempty"`
	// Bypass (priority critical only) starts the job at once on the daemon that
	// takes the request, in a reserved slot; Ran is then "bypass".
	Bypass bool `json:"bypass,omitempty"`
}

// Fallback is what an enqueue does when the queue cannot take the job now.
type Fallback string

// FallbackSync runs the job on the daemon that took the request.
const FallbackSync Fallback = "sync"

// EnqueueStatusSpooled is the status of an enqueue answered 202 while the daemon's
// Redis is away: the job waits in the daemon's spool (docs/OPERATIONS.md) and is
// stored, as pending, when Redis is back.
const EnqueueStatusSpooled JobStatus = "spooled"

type enqueueFields EnqueueRequest

// MarshalJSON writes the enqueue body: timeout in seconds, run_at in RFC 3339 UTC
// to the millisecond (the daemon keeps milliseconds).
func (r EnqueueRequest) MarshalJSON() ([]byte, error) {
	aux := struct {
		enqueueFields
		Timeout float64 `json:"timeout,omitempty"`
		RunAt   string  `json:"run_at,omitempty"`
	}{enqueueFields: enqueueFields(r), Timeout: r.Timeout.Seconds()}
	if r.RunAt != nil {
		aux.RunAt = r.RunAt.UTC().Format(timestampLayout)
	}
	return json.Marshal(aux)
}

// Enqueued is the answer of an enqueue: the spec's job_id, status and enqueued time.
type Enqueued struct {
	JobID    string    `json:"job_id"`
	Status   JobStatus `json:"status"`
	Enqueued time.Time `json:"enqueued"`
	// Duplicate is true when the idempotency key matched an earlier enqueue: JobID is
	// that job's, and nothing new was enqueued.
	Duplicate bool `json:"duplicate,omitempty"`
	// Ran says how a Fallback or Bypass job started without a claim: "sync" or
	// "bypass" (empty when it was queued as usual).
	Ran string `json:"ran,omitempty"`
	// Result is the result of a job that ran on the daemon (Status completed).
	Result map[string]any `json:"result,omitempty"`
	// Error says why a job that ran on the daemon failed (Status failed).
	Error string `json:"error,omitempty"`
}

// Spooled reports whether the daemon spooled the job (202, Redis away): JobID is
// its id, and it becomes pending once Redis is back.
func (e *Enqueued) Spooled() bool { return e.Status == EnqueueStatusSpooled }

// timestampLayout is the daemon's own time format: RFC 3339, UTC, milliseconds.
const timestampLayout = "2006-01-02T15:04:05.000Z07:00"

// seconds converts the API's seconds (a JSON number) to a Duration.
func seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second))
}
