package fleetd_test

// Worker metrics and health, typed errors (422 with the field, 404, 401) and company
// isolation against a live daemon. The helpers and the environment are in live_test.go.

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	fleetd "fleetd/clients/go"
)

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
