package fleetd_test

// Scheduled jobs against a live daemon: create, get, list, the name conflict and a bad
// expression, pause and resume with the scheduler's counts, update, delete. The
// helpers and the environment are in live_test.go.

import (
	"errors"
	"fmt"
	"sort"
	"strings"
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

// TestLiveScheduledJobPages pages through GET /scheduled three at a time while a
// schedule is deleted between two pages: each of the others comes exactly once, in
// creation order, and ListScheduledJobs returns them all.
func TestLiveScheduledJobPages(t *testing.T) {
	c, ctx := live(t)
	prefix := unique("Paged")
	var made []*fleetd.ScheduledJob
	for i := 0; i < 8; i++ {
		s, err := c.CreateScheduledJob(ctx, fleetd.ScheduledJobRequest{
			Name: fmt.Sprintf("%s %d", prefix, i), JobType: "noop", Schedule: "@daily",
		})
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, s)
		t.Cleanup(func() { _ = c.DeleteScheduledJob(ctx, s.ID) })
	}
	// The listing's order: creation time, then id for those of one millisecond.
	sort.Slice(made, func(i, j int) bool {
		if !made[i].CreatedAt.Equal(made[j].CreatedAt) {
			return made[i].CreatedAt.Before(made[j].CreatedAt)
		}
		return made[i].ID < made[j].ID
	})
	var ids []string
	for _, s := range made {
		ids = append(ids, s.ID)
	}
	mine := func(list []fleetd.ScheduledJob) []string {
		var out []string
		for _, s := range list {
			if strings.HasPrefix(s.Name, prefix+" ") {
				out = append(out, s.ID)
			}
		}
		return out
	}
	var seen []string
	opts := &fleetd.ScheduleListOptions{Limit: 3}
	deleted := false
	for pages := 0; ; pages++ {
		page, err := c.ListScheduledJobsPage(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		if page.Limit != 3 || page.Count != len(page.ScheduledJobs) || page.Count > 3 {
			t.Fatalf("page %d: limit %d, count %d of %d", pages, page.Limit, page.Count, len(page.ScheduledJobs))
		}
		seen = append(seen, mine(page.ScheduledJobs)...)
		if !deleted && len(seen) > 0 {
			// The last schedule seen so far goes, and one not read yet.
			for _, id := range []string{seen[len(seen)-1], ids[6]} {
				if err := c.DeleteScheduledJob(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
			deleted = true
		}
		if page.NextCursor == "" {
			break
		}
		opts.Cursor = page.NextCursor
	}
	want := []string{}
	for _, id := range ids {
		if id != ids[6] {
			want = append(want, id)
		}
	}
	if strings.Join(seen, " ") != strings.Join(want, " ") {
		t.Fatalf("paged %v, want %v", seen, want)
	}
	all, err := c.ListScheduledJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := mine(all); len(got) != 6 {
		t.Fatalf("ListScheduledJobs has %d of this test's 6 left: %v", len(got), got)
	}
	_, err = c.ListScheduledJobsPage(ctx, &fleetd.ScheduleListOptions{Cursor: "not a cursor"})
	var apiErr *fleetd.Error
	if !errors.As(err, &apiErr) || !fleetd.IsValidation(err) {
		t.Fatalf("bad cursor: %v", err)
	}
	if _, ok := apiErr.Field("cursor"); !ok {
		t.Fatalf("bad cursor fields %+v", apiErr.Fields())
	}
}
