package fleetd_test

// Every client call against a live daemon with a real Redis: the pytest suite
// (tests/clients/test_go_client.py) starts both and runs `go test` with
//
//	FLEETD_URL            the daemon's base URL, e.g. http://127.0.0.1:41234
//	FLEETD_TOKEN          a platform admin token
//	FLEETD_COMPANY_TOKEN  an admin token bound to FLEETD_COMPANY (optional)
//
// Without FLEETD_URL these tests are skipped, so `go test ./...` alone still runs the
// offline ones. The daemon runs the built-in `noop` job type (data: sleep_ms,
// fail_attempts) with a worker, and its own Redis namespace.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	fleetd "fleetd/clients/go"
)

// waitLimit bounds every wait for a job or a heartbeat: a noop job finishes within
// milliseconds and heartbeats come every 2 s, so 20 s only passes on a starved machine.
const waitLimit = 20 * time.Second

// poll is the pause between two looks at a job's status.
const poll = 20 * time.Millisecond

func live(t *testing.T) (*fleetd.Client, context.Context) {
	t.Helper()
	url := os.Getenv("FLEETD_URL")
	if url == "" {
		t.Skip("FLEETD_URL is not set: no live daemon (tests/clients/test_go_client.py starts one)")
	}
	c, err := fleetd.New(url, fleetd.WithToken(os.Getenv("FLEETD_TOKEN")))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitLimit)
	t.Cleanup(cancel)
	return c, ctx
}

// unique makes names and keys that no earlier run or test used.
func unique(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
}

func waitStatus(ctx context.Context, t *testing.T, c *fleetd.Client, id string, want fleetd.JobStatus) *fleetd.Job {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		job, err := c.Get(ctx, id)
		if err != nil {
			t.Fatalf("get %s: %v", id, err)
		}
		if job.Status == want {
			return job
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s is %s after %v, want %s (error %q)", id, job.Status, waitLimit, want, job.Error)
		}
		time.Sleep(poll)
	}
}

func enqueue(ctx context.Context, t *testing.T, c *fleetd.Client, req fleetd.EnqueueRequest) string {
	t.Helper()
	res, err := c.Enqueue(ctx, req)
	if err != nil {
		t.Fatalf("enqueue %+v: %v", req, err)
	}
	if !strings.HasPrefix(res.JobID, "job_") || res.Status != fleetd.JobStatusPending || res.Enqueued.IsZero() {
		t.Fatalf("enqueue answer %+v", res)
	}
	return res.JobID
}

func TestLiveEnqueueGetCompleted(t *testing.T) {
	c, ctx := live(t)
	id := enqueue(ctx, t, c, fleetd.EnqueueRequest{
		Type:       "noop",
		Data:       map[string]any{"n": 1, "who": "go"},
		Priority:   fleetd.JobPriorityHigh,
		MaxRetries: fleetd.Ptr(2),
		Timeout:    90 * time.Second,
		UserID:     "go-tester",
		Tags:       []string{"go", "client"},
	})
	job := waitStatus(ctx, t, c, id, fleetd.JobStatusCompleted)
	if job.ID != id || job.Type != "noop" || job.Priority != fleetd.JobPriorityHigh {
		t.Fatalf("job %+v", job)
	}
	if job.Data["who"] != "go" || job.Data["n"] != 1.0 || job.MaxRetries != 2 || job.RetryCount != 0 {
		t.Fatalf("job data/retries %+v", job)
	}
	if job.Timeout != 90*time.Second || job.UserID != "go-tester" || strings.Join(job.Tags, ",") != "go,client" {
		t.Fatalf("job timeout/user/tags %v %q %v", job.Timeout, job.UserID, job.Tags)
	}
	if job.StartedAt == nil || job.CompletedAt == nil || job.CompletedAt.Before(job.CreatedAt) {
		t.Fatalf("job times %v %v %v", job.CreatedAt, job.StartedAt, job.CompletedAt)
	}
	echo, _ := job.Result["echo"].(map[string]any)
	if echo["who"] != "go" || job.Attempts != 1 || job.Error != "" {
		t.Fatalf("job result %+v", job)
	}
}

func TestLiveListByStatusPagesWithACursor(t *testing.T) {
	c, ctx := live(t)
	later := time.Now().Add(time.Hour)
	var ids []string
	for i := 0; i < 3; i++ {
		req := fleetd.EnqueueRequest{Type: "noop", Data: map[string]any{"i": i}, RunAt: &later}
		ids = append(ids, enqueue(ctx, t, c, req))
	}
	job, err := c.Get(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if job.Status != fleetd.JobStatusPending || job.RunAt == nil || job.RunAt.Sub(later).Abs() > time.Millisecond {
		t.Fatalf("delayed job %+v (run_at %v, want %v)", job, job.RunAt, later)
	}
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		page, err := c.ListByStatus(ctx, fleetd.JobStatusPending, &fleetd.ListOptions{Limit: 2, Cursor: cursor, Type: "noop"})
		if err != nil {
			t.Fatal(err)
		}
		if page.Status != fleetd.JobStatusPending || page.Limit != 2 || page.Count != len(page.Jobs) || page.Count > 2 {
			t.Fatalf("page %+v", page)
		}
		for _, j := range page.Jobs {
			seen[j.ID] = true
		}
		if page.NextCursor == "" {
			break
		}
		if pages > 100 {
			t.Fatal("more than 100 pages of pending jobs")
		}
		cursor = page.NextCursor
	}
	for _, id := range ids {
		if !seen[id] {
			t.Fatalf("pending job %s not listed (saw %d)", id, len(seen))
		}
	}
	for _, id := range ids { // leave no delayed job behind for the other tests
		if _, err := c.Cancel(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLiveCancelResetStatsCleanup(t *testing.T) {
	c, ctx := live(t)
	later := time.Now().Add(time.Hour)

	// A delayed job is cancelled at once; cancelling it again is a conflict.
	delayed := enqueue(ctx, t, c, fleetd.EnqueueRequest{Type: "noop", RunAt: &later})
	res, err := c.Cancel(ctx, delayed)
	if err != nil || !res.Cancelled || res.Status != fleetd.JobStatusCancelled || res.JobID != delayed {
		t.Fatalf("cancel: %+v, %v", res, err)
	}
	_, err = c.Cancel(ctx, delayed)
	var apiErr *fleetd.Error
	if !fleetd.IsConflict(err) || !errors.As(err, &apiErr) || apiErr.Details["status"] != "cancelled" {
		t.Fatalf("second cancel: %v", err)
	}

	// A running job is cancelled through its daemon.
	running := enqueue(ctx, t, c, fleetd.EnqueueRequest{Type: "noop", Data: map[string]any{"sleep_ms": 60000}})
	waitStatus(ctx, t, c, running, fleetd.JobStatusProcessing)
	res, err = c.Cancel(ctx, running)
	if err != nil || res.Cancelled || !res.CancelRequested || res.Status != fleetd.JobStatusProcessing {
		t.Fatalf("cancel running: %+v, %v", res, err)
	}
	waitStatus(ctx, t, c, running, fleetd.JobStatusCancelled)

	// A job that fails for good is reset to pending, then runs again (and fails again).
	failing := enqueue(ctx, t, c, fleetd.EnqueueRequest{
		Type: "noop", Data: map[string]any{"fail_attempts": 1000}, MaxRetries: fleetd.Ptr(0),
	})
	failed := waitStatus(ctx, t, c, failing, fleetd.JobStatusFailed)
	if !strings.Contains(failed.Error, "failing attempt 1") {
		t.Fatalf("failed job error %q", failed.Error)
	}
	reset, err := c.Reset(ctx, failing)
	if err != nil || !reset.Reset || reset.Status != fleetd.JobStatusPending || reset.JobID != failing {
		t.Fatalf("reset: %+v, %v", reset, err)
	}
	again := waitStatus(ctx, t, c, failing, fleetd.JobStatusFailed)
	if again.Attempts != 2 {
		t.Fatalf("attempts after reset %d, want 2", again.Attempts)
	}
	// Only failed and cancelled jobs can be reset.
	waiting := enqueue(ctx, t, c, fleetd.EnqueueRequest{Type: "noop", RunAt: &later})
	if _, err := c.Reset(ctx, waiting); !fleetd.IsConflict(err) {
		t.Fatalf("reset of a pending job: %v", err)
	}
	if _, err := c.Cancel(ctx, waiting); err != nil {
		t.Fatal(err)
	}

	stats, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sum := stats.Pending + stats.Processing + stats.Completed + stats.Failed + stats.Retrying + stats.Cancelled
	if sum != stats.Total || stats.Failed < 1 || stats.Cancelled < 3 {
		t.Fatalf("stats %+v", stats)
	}

	// Cleanup of everything finished: the failed and cancelled jobs are gone.
	cleaned, err := c.Cleanup(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if cleaned.OlderThan != 0 || cleaned.Deleted < 4 || cleaned.ByStatus[fleetd.JobStatusCancelled] < 3 ||
		cleaned.ByStatus[fleetd.JobStatusFailed] < 1 {
		t.Fatalf("cleanup %+v", cleaned)
	}
	for _, id := range []string{delayed, running, failing, waiting} {
		if _, err := c.Get(ctx, id); !fleetd.IsNotFound(err) {
			t.Fatalf("get %s after cleanup: %v", id, err)
		}
	}
	if cleaned, err = c.Cleanup(ctx, 24*time.Hour); err != nil || cleaned.OlderThan != 24*time.Hour {
		t.Fatalf("cleanup 24h: %+v, %v", cleaned, err)
	}
}

func TestLiveEnqueueBulk(t *testing.T) {
	c, ctx := live(t)
	reqs := []fleetd.EnqueueRequest{
		{Type: "noop", Data: map[string]any{"i": 0}},
		{Type: "noop", Data: map[string]any{"i": 1}, Priority: fleetd.JobPriorityCritical},
		{Type: "noop", Data: map[string]any{"i": 2}, Priority: fleetd.JobPriorityLow},
	}
	key := unique("bulk")
	first, err := c.EnqueueBulk(ctx, reqs, fleetd.WithIdempotencyKey(key))
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 3 {
		t.Fatalf("bulk answer %+v", first)
	}
	for i, res := range first {
		job := waitStatus(ctx, t, c, res.JobID, fleetd.JobStatusCompleted)
		if job.Data["i"] != float64(i) || res.Duplicate {
			t.Fatalf("job %d: %+v / %+v", i, job, res)
		}
		if job.IdempotencyKey != fmt.Sprintf("%s:%d", key, i) {
			t.Fatalf("job %d key %q", i, job.IdempotencyKey)
		}
	}
	again, err := c.EnqueueBulk(ctx, reqs, fleetd.WithIdempotencyKey(key))
	if err != nil {
		t.Fatal(err)
	}
	for i := range again {
		if again[i].JobID != first[i].JobID || !again[i].Duplicate {
			t.Fatalf("repeat %d: %+v, first %+v", i, again[i], first[i])
		}
	}

	// One bad job refuses the whole request, naming it.
	bad := []fleetd.EnqueueRequest{{Type: "noop"}, {Type: "noop", Data: map[string]any{"sleep_ms": -1}}}
	_, err = c.EnqueueBulk(ctx, bad)
	var apiErr *fleetd.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 422 {
		t.Fatalf("bad bulk: %v", err)
	}
	if msg, ok := apiErr.Field("jobs[1].data.sleep_ms"); !ok || !strings.Contains(msg, "integer") {
		t.Fatalf("bad bulk fields %+v", apiErr.Fields())
	}
}

func TestLiveIdempotencyKey(t *testing.T) {
	c, ctx := live(t)
	key := unique("order")
	req := fleetd.EnqueueRequest{Type: "noop", Data: map[string]any{"order": 42}}
	first, err := c.Enqueue(ctx, req, fleetd.WithIdempotencyKey(key))
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Enqueue(ctx, req, fleetd.WithIdempotencyKey(key))
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || !second.Duplicate || second.JobID != first.JobID {
		t.Fatalf("first %+v, second %+v", first, second)
	}
	// The key in the body works the same.
	req.IdempotencyKey = key
	third, err := c.Enqueue(ctx, req)
	if err != nil || third.JobID != first.JobID || !third.Duplicate {
		t.Fatalf("body key: %+v, %v", third, err)
	}
	// Without a key the client makes one up (so its retries are safe): two calls, two jobs.
	a := enqueue(ctx, t, c, fleetd.EnqueueRequest{Type: "noop"})
	b := enqueue(ctx, t, c, fleetd.EnqueueRequest{Type: "noop"})
	job, err := c.Get(ctx, a)
	if err != nil || a == b || !strings.HasPrefix(job.IdempotencyKey, "auto-") {
		t.Fatalf("auto keys: %s %s %+v %v", a, b, job, err)
	}
}

func TestLiveScheduledJobs(t *testing.T) {
	c, ctx := live(t)
	name := unique("Nightly export")
	created, err := c.CreateScheduledJob(ctx, fleetd.ScheduledJobRequest{
		Name:     name,
		JobType:  "noop",
		Data:     map[string]any{"from": "go"},
		Schedule: "@daily",
		Priority: fleetd.JobPriorityLow,
		UserID:   "go-tester",
		Timezone: "Europe/Berlin",
	})
	if err != nil {
		t.Fatal(err)
	}
	if created.ID == "" || created.Name != name || created.JobType != "noop" || !created.IsActive ||
		created.Schedule != "@daily" || created.Priority != fleetd.JobPriorityLow ||
		created.Timezone != "Europe/Berlin" || created.MisfirePolicy != fleetd.MisfireRunOnce ||
		created.NextRun.Before(time.Now()) || created.Data["from"] != "go" || created.UserID != "go-tester" {
		t.Fatalf("created %+v", created)
	}

	got, err := c.GetScheduledJob(ctx, created.ID)
	if err != nil || got.ID != created.ID || !got.NextRun.Equal(created.NextRun) {
		t.Fatalf("get: %+v, %v", got, err)
	}
	all, err := c.ListScheduledJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range all {
		found = found || s.ID == created.ID
	}
	if !found {
		t.Fatalf("schedule %s not in the list of %d", created.ID, len(all))
	}

	if _, err := c.CreateScheduledJob(ctx, fleetd.ScheduledJobRequest{Name: name, JobType: "noop", Schedule: "1h"}); !fleetd.IsConflict(err) {
		t.Fatalf("same name again: %v", err)
	}
	_, err = c.CreateScheduledJob(ctx, fleetd.ScheduledJobRequest{Name: unique("bad"), JobType: "noop", Schedule: "every now and then"})
	var apiErr *fleetd.Error
	if !errors.As(err, &apiErr) || !fleetd.IsValidation(err) {
		t.Fatalf("bad schedule: %v", err)
	}
	if _, ok := apiErr.Field("schedule"); !ok {
		t.Fatalf("bad schedule fields %+v", apiErr.Fields())
	}

	before, err := c.SchedulerStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	paused, err := c.UpdateScheduledJob(ctx, created.ID, fleetd.ScheduledJobUpdate{IsActive: fleetd.Ptr(false)})
	if err != nil || paused.IsActive || !paused.NextRun.IsZero() || paused.Name != name || paused.Schedule != "@daily" {
		t.Fatalf("pause: %+v, %v", paused, err)
	}
	after, err := c.SchedulerStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.TotalScheduledJobs != before.TotalScheduledJobs || after.ActiveJobs != before.ActiveJobs-1 ||
		after.InactiveJobs != before.InactiveJobs+1 || after.TotalScheduledJobs != after.ActiveJobs+after.InactiveJobs {
		t.Fatalf("stats before %+v, after %+v", before, after)
	}

	updated, err := c.UpdateScheduledJob(ctx, created.ID, fleetd.ScheduledJobUpdate{
		IsActive: fleetd.Ptr(true),
		Schedule: fleetd.Ptr("30m"),
		Priority: fleetd.Ptr(fleetd.JobPriorityHigh),
		Data:     map[string]any{},
	})
	if err != nil || !updated.IsActive || updated.Schedule != "30m" || updated.Priority != fleetd.JobPriorityHigh ||
		len(updated.Data) != 0 || updated.NextRun.IsZero() || updated.NextRun.After(time.Now().Add(31*time.Minute)) {
		t.Fatalf("update: %+v, %v", updated, err)
	}

	if err := c.DeleteScheduledJob(ctx, created.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetScheduledJob(ctx, created.ID); !fleetd.IsNotFound(err) {
		t.Fatalf("get after delete: %v", err)
	}
	if err := c.DeleteScheduledJob(ctx, created.ID); !fleetd.IsNotFound(err) {
		t.Fatalf("delete again: %v", err)
	}
	if _, err := c.UpdateScheduledJob(ctx, created.ID, fleetd.ScheduledJobUpdate{Name: fleetd.Ptr("x")}); !fleetd.IsNotFound(err) {
		t.Fatalf("update after delete: %v", err)
	}
}

func TestLiveWorkerMetricsAndHealth(t *testing.T) {
	c, ctx := live(t)
	id := enqueue(ctx, t, c, fleetd.EnqueueRequest{Type: "noop", Data: map[string]any{"sleep_ms": 5}})
	waitStatus(ctx, t, c, id, fleetd.JobStatusCompleted)

	// The metrics come from the daemons' heartbeats (every 2 s by default).
	deadline := time.Now().Add(waitLimit)
	var report *fleetd.WorkerMetricsReport
	for {
		var err error
		if report, err = c.WorkerMetrics(ctx); err != nil {
			t.Fatal(err)
		}
		if report.Metrics.JobsProcessed >= 1 && !report.Metrics.LastJobTime.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no processed job in the metrics after %v: %+v", waitLimit, report.Metrics)
		}
		time.Sleep(100 * time.Millisecond)
	}
	m := report.Metrics
	if m.JobsSucceeded < 1 || m.JobsProcessed < m.JobsSucceeded+m.JobsFailed || m.TotalJobTime < m.AverageJobTime ||
		m.AverageJobTime < 0 || m.StartTime.IsZero() || m.StartTime.After(time.Now()) || m.Uptime < 0 {
		t.Fatalf("metrics %+v", m)
	}
	if len(report.Daemons) == 0 {
		t.Fatal("no daemon in the metrics")
	}
	d := report.Daemons[0]
	if d.DaemonID == "" || d.PID == 0 || d.Concurrency < 1 || !d.Ready || d.HeartbeatAt.IsZero() ||
		!strings.Contains(strings.Join(d.Roles, ","), "worker") || !strings.Contains(strings.Join(d.JobTypes, ","), "noop") {
		t.Fatalf("daemon %+v", d)
	}

	h, err := c.WorkerHealth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if (h.Status != fleetd.HealthHealthy && h.Status != fleetd.HealthDegraded) || h.Workers < 1 || h.Concurrency < 1 ||
		h.JobsProcessed < 1 || h.SuccessRate+h.FailureRate > 100.1 || h.LastJobTime.IsZero() || h.Backlog < 0 {
		t.Fatalf("health %+v", h)
	}
	if (h.Status == fleetd.HealthHealthy) != (len(h.Reasons) == 0) {
		t.Fatalf("health status %s with reasons %v", h.Status, h.Reasons)
	}
}

func TestLiveErrorsAreTyped(t *testing.T) {
	c, ctx := live(t)

	// 422, naming the field.
	_, err := c.Enqueue(ctx, fleetd.EnqueueRequest{Type: "noop", Priority: 99})
	var apiErr *fleetd.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 422 || apiErr.Code != "validation_failed" || !fleetd.IsValidation(err) {
		t.Fatalf("priority 99: %v", err)
	}
	if msg, ok := apiErr.Field("priority"); !ok || !strings.Contains(msg, "1 to 20") {
		t.Fatalf("priority 99 fields %+v", apiErr.Fields())
	}
	_, err = c.Enqueue(ctx, fleetd.EnqueueRequest{Type: "noop", Data: map[string]any{"sleep_ms": "soon"}})
	if !errors.As(err, &apiErr) {
		t.Fatalf("sleep_ms soon: %v", err)
	}
	if _, ok := apiErr.Field("data.sleep_ms"); !ok {
		t.Fatalf("data field %+v", apiErr.Fields())
	}
	if _, err := c.ListByStatus(ctx, fleetd.JobStatus("lost"), nil); !fleetd.IsValidation(err) {
		t.Fatalf("status lost: %v", err)
	}

	// 404.
	_, err = c.Get(ctx, "job_does_not_exist")
	if !fleetd.IsNotFound(err) || !errors.As(err, &apiErr) || apiErr.Code != "not_found" || apiErr.Message == "" {
		t.Fatalf("missing job: %v", err)
	}
	if _, err := c.Cancel(ctx, "job_does_not_exist"); !fleetd.IsNotFound(err) {
		t.Fatalf("cancel missing: %v", err)
	}

	// 401 with a bad token, and with none; never retried.
	for _, token := range []string{"not-a-jwt", ""} {
		bad, err := fleetd.New(os.Getenv("FLEETD_URL"), fleetd.WithToken(token))
		if err != nil {
			t.Fatal(err)
		}
		_, err = bad.Stats(ctx)
		if !fleetd.IsUnauthorized(err) || !errors.As(err, &apiErr) || apiErr.Code != "unauthorized" {
			t.Fatalf("token %q: %v", token, err)
		}
	}
}

func TestLiveCompanyIsolation(t *testing.T) {
	c, ctx := live(t)
	company, token := os.Getenv("FLEETD_COMPANY"), os.Getenv("FLEETD_COMPANY_TOKEN")
	if company == "" || token == "" {
		t.Skip("FLEETD_COMPANY and FLEETD_COMPANY_TOKEN are not set")
	}
	tenant, err := fleetd.New(os.Getenv("FLEETD_URL"), fleetd.WithToken(token))
	if err != nil {
		t.Fatal(err)
	}
	// The company's enqueue is stamped with its company, whatever it asks for.
	own := enqueue(ctx, t, tenant, fleetd.EnqueueRequest{Type: "noop", CompanyID: company})
	job, err := c.Get(ctx, own)
	if err != nil || job.CompanyID != company {
		t.Fatalf("platform view of the company's job: %+v, %v", job, err)
	}
	// Another company's (here: the platform's) job does not exist for it.
	platform := enqueue(ctx, t, c, fleetd.EnqueueRequest{Type: "noop"})
	if _, err := tenant.Get(ctx, platform); !fleetd.IsNotFound(err) {
		t.Fatalf("company reads a platform job: %v", err)
	}
	// Queue-wide statistics are for platform admins.
	_, err = tenant.Stats(ctx)
	var apiErr *fleetd.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 403 || apiErr.Code != "forbidden" {
		t.Fatalf("company stats: %v", err)
	}
}
