package fleetd

// ListScheduledJobs follows next_cursor through every page of GET /scheduled, and
// ListScheduledJobsPage sends the page it is asked for.

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// pagedSchedules serves `total` schedules in pages of the asked limit, with cursors
// "c<index>", and records each query it was sent.
func pagedSchedules(t *testing.T, total int, repeatCursor bool) (*Client, *[]url.Values) {
	t.Helper()
	var queries []url.Values
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		queries = append(queries, q)
		limit := 50
		if q.Get("limit") != "" {
			fmt.Sscan(q.Get("limit"), &limit)
		}
		start := 0
		if c := q.Get("cursor"); c != "" {
			fmt.Sscanf(c, "c%d", &start)
		}
		end := min(start+limit, total)
		items := ""
		for i := start; i < end; i++ {
			if i > start {
				items += ","
			}
			items += fmt.Sprintf(`{"id": "sch_%d", "name": "s%d"}`, i, i)
		}
		next := "null"
		if end < total {
			next = fmt.Sprintf(`"c%d"`, end)
			if repeatCursor && start > 0 {
				next = fmt.Sprintf(`"c%d"`, start)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"scheduled_jobs": [%s], "count": %d, "limit": %d, "next_cursor": %s}`,
			items, end-start, limit, next)
	}))
	t.Cleanup(srv.Close)
	c, err := New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c, &queries
}

func min(a, b int) int {
	if a < b {
		return a
	}
	return b
}

func TestListScheduledJobsFollowsEveryPage(t *testing.T) {
	c, queries := pagedSchedules(t, 1234, false)
	all, err := c.ListScheduledJobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1234 {
		t.Fatalf("%d schedules, want 1234", len(all))
	}
	for i, s := range all {
		if s.ID != fmt.Sprintf("sch_%d", i) {
			t.Fatalf("schedule %d is %s", i, s.ID)
		}
	}
	want := []string{"", "c500", "c1000"}
	if len(*queries) != len(want) {
		t.Fatalf("%d requests: %v", len(*queries), *queries)
	}
	for i, q := range *queries {
		if q.Get("limit") != "500" || q.Get("cursor") != want[i] {
			t.Fatalf("request %d sent %v", i, q)
		}
	}
}

func TestListScheduledJobsStopsOnACursorThatDoesNotMove(t *testing.T) {
	c, queries := pagedSchedules(t, 1234, true)
	if _, err := c.ListScheduledJobs(context.Background()); err == nil {
		t.Fatal("no error for a page that answers its own cursor")
	}
	// The first page moves on to c500; the second answers c500 again.
	if len(*queries) != 2 {
		t.Fatalf("%d requests, want 2", len(*queries))
	}
}

func TestListScheduledJobsPageSendsLimitAndCursor(t *testing.T) {
	c, queries := pagedSchedules(t, 30, false)
	page, err := c.ListScheduledJobsPage(context.Background(), &ScheduleListOptions{Limit: 7, Cursor: "c14"})
	if err != nil {
		t.Fatal(err)
	}
	if page.Count != 7 || page.Limit != 7 || page.NextCursor != "c21" || page.ScheduledJobs[0].ID != "sch_14" {
		t.Fatalf("page %+v", page)
	}
	if q := (*queries)[0]; q.Get("limit") != "7" || q.Get("cursor") != "c14" {
		t.Fatalf("query %v", q)
	}
	last, err := c.ListScheduledJobsPage(context.Background(), &ScheduleListOptions{Limit: 50, Cursor: "c21"})
	if err != nil || last.NextCursor != "" || last.Count != 9 {
		t.Fatalf("last page %+v, %v", last, err)
	}
	if _, err := c.ListScheduledJobsPage(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if q := (*queries)[2]; q.Has("limit") || q.Has("cursor") {
		t.Fatalf("nil options sent %v", q)
	}
}
