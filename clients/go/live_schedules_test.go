package fleetd_test

// Scheduled jobs against a live daemon: create, get, list, the name conflict and a bad
// expression, pause and resume with the scheduler's counts, update, delete. The
// helpers and the environment are in live_test.go.

import (
	"errors"
	"testing"
	"time"

	fleetd "fleetd/clients/go"
)

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
