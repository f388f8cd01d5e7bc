package fleetd

// ListByStatus sends its filters as the query the daemon reads (GET /status/{status}).

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

func TestListByStatusSendsUserAndSearch(t *testing.T) {
	var got url.Values
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.Query()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"jobs": [], "status": "pending", "count": 0, "limit": 5, "next_cursor": null}`))
	}))
	defer srv.Close()
	c, err := New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	opts := &ListOptions{Limit: 5, UserID: "alice", Search: "report"}
	if _, err := c.ListByStatus(context.Background(), JobStatusPending, opts); err != nil {
		t.Fatal(err)
	}
	if got.Get("user_id") != "alice" || got.Get("q") != "report" || got.Get("limit") != "5" {
		t.Fatalf("query %v", got)
	}
}
