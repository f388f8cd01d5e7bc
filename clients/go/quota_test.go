package fleetd

// A company over its quota ([limits] company_max_pending, company_enqueue_rate) is
// refused at every door that puts jobs in its backlog, Reset and ResumeWorkflow
// included: 429 quota_exceeded with Retry-After, nothing written. The answer reaches
// the caller as an *Error with the quota's details once the retries are spent.

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

const overQuota = `{"error":{"code":"quota_exceeded","message":"company 'A' is over its quota (at most 2 jobs waiting); retry later","details":{"company_id":"A","quota":"pending","limit":2,"retry_after":1}}}`

func noRetries(t *testing.T, answers ...answer) (*Client, *script) {
	t.Helper()
	s := &script{answers: answers}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	c, err := New(srv.URL, WithToken("t0k3n"), WithRetryPolicy(RetryPolicy{MaxAttempts: 1}))
	if err != nil {
		t.Fatal(err)
	}
	return c, s
}

func checkQuotaError(t *testing.T, err error) {
	t.Helper()
	var apiErr *Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("err = %v, want *Error", err)
	}
	if apiErr.StatusCode != http.StatusTooManyRequests || apiErr.Code != "quota_exceeded" {
		t.Fatalf("err = %v", apiErr)
	}
	if apiErr.RetryAfter != time.Second || !apiErr.Retryable() {
		t.Fatalf("RetryAfter = %v, Retryable = %v", apiErr.RetryAfter, apiErr.Retryable())
	}
	if apiErr.Details["company_id"] != "A" || apiErr.Details["quota"] != "pending" || apiErr.Details["limit"] != 2.0 {
		t.Fatalf("Details = %v", apiErr.Details)
	}
}

func TestResetAndResumeOverAQuotaReturnTheQuotaError(t *testing.T) {
	c, s := noRetries(t, answer{429, "1", overQuota})
	ctx := context.Background()
	if _, err := c.Reset(ctx, "job_1"); err == nil {
		t.Fatal("Reset over the quota succeeded")
	} else {
		checkQuotaError(t, err)
	}
	if _, err := c.ResumeWorkflow(ctx, "wf_1"); err == nil {
		t.Fatal("ResumeWorkflow over the quota succeeded")
	} else {
		checkQuotaError(t, err)
	}
	if s.count() != 2 {
		t.Fatalf("%d requests, want 2", s.count())
	}
	for i, want := range []string{"/api/v1/admin/jobs/job_1/reset", "/api/v1/admin/workflows/wf_1/resume"} {
		if got := s.requests[i]; got.method != http.MethodPost || got.path != want {
			t.Fatalf("request %d = %s %s, want POST %s", i, got.method, got.path, want)
		}
	}
}

func TestResetRefusedByAQuotaIsRetriedAfterRetryAfter(t *testing.T) {
	// A refused reset wrote nothing, so the default policy sends it again.
	c, s := serve(t,
		answer{429, "1", overQuota},
		answer{200, "", `{"job_id":"job_1","status":"pending","reset":true}`},
	)
	res, err := c.Reset(context.Background(), "job_1")
	if err != nil || !res.Reset || res.Status != JobStatusPending {
		t.Fatalf("Reset = %+v, %v", res, err)
	}
	if s.count() != 2 || s.times[1].Sub(s.times[0]) < time.Second {
		t.Fatalf("%d requests, retried after %v", s.count(), s.times[len(s.times)-1].Sub(s.times[0]))
	}
}
