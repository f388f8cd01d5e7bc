package fleetd_test

// The job calls against a live daemon with a real Redis, and the helpers of every live
// test (live_schedules_test.go, live_workers_test.go): the pytest suite
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
