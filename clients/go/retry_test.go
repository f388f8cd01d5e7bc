package fleetd

// Retry behaviour against httptest servers that script their answers: 503 and 429 are
// retried after Retry-After (plus jitter), a 4xx never is, a context deadline shorter
// than the wait ends the call at once, and a retried enqueue resends the same body and
// Idempotency-Key.

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// script answers the i-th request with answers[i] (the last one repeats) and records
// every request.
type script struct {
	mu       sync.Mutex
	answers  []answer
	requests []recorded
	times    []time.Time
}

type answer struct {
	status     int
	retryAfter string
	body       string
}

type recorded struct {
	method, path, key, auth, body string
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	n := len(s.requests)
	s.requests = append(s.requests, recorded{
		r.Method, r.URL.RequestURI(), r.Header.Get("Idempotency-Key"),
		r.Header.Get("Authorization"), string(body),
	})
	s.times = append(s.times, time.Now())
	a := s.answers[len(s.answers)-1]
	if n < len(s.answers) {
		a = s.answers[n]
	}
	s.mu.Unlock()
	if a.retryAfter != "" {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.status)
	_, _ = io.WriteString(w, a.body)
}

func (s *script) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

func serve(t *testing.T, answers ...answer) (*Client, *script) {
	t.Helper()
	s := &script{answers: answers}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	c, err := New(srv.URL, WithToken("t0k3n"))
	if err != nil {
		t.Fatal(err)
	}
	return c, s
}

const (
	statsBody   = `{"stats":{"pending":1,"processing":2,"completed":3,"failed":4,"retrying":5,"cancelled":6,"total":21}}`
	unavailable = `{"error":{"code":"redis_unavailable","message":"Redis is unreachable: timeout","details":{}}}`
	enqueued    = `{"job_id":"job_1","status":"pending","enqueued":"2024-01-15T10:30:00.000Z"}`
)

func TestRetries503AfterRetryAfterThenSucceeds(t *testing.T) {
	c, s := serve(t,
		answer{503, "1", unavailable},
		answer{200, "", statsBody},
	)
	stats, err := c.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if stats.Total != 21 || stats.Cancelled != 6 {
		t.Fatalf("stats = %+v", stats)
	}
	if s.count() != 2 {
		t.Fatalf("%d requests, want 2", s.count())
	}
	// Retry-After: 1 is a floor; the jitter (at most 20%) only adds to it. The upper
	// bound allows 0.5 s of scheduling delay on a busy machine.
	gap := s.times[1].Sub(s.times[0])
	if gap < time.Second || gap > 1700*time.Millisecond {
		t.Fatalf("retried after %v, want 1s..1.2s (+ scheduling)", gap)
	}
	if s.requests[1].auth != "Bearer t0k3n" {
		t.Fatalf("Authorization = %q", s.requests[1].auth)
	}
}

func TestRetries429WithoutRetryAfterByBackoff(t *testing.T) {
	c, s := serve(t,
		answer{429, "", `{"error":{"code":"too_many_requests","message":"slow down","details":{}}}`},
		answer{429, "", `{"error":{"code":"too_many_requests","message":"slow down","details":{}}}`},
		answer{200, "", statsBody},
	)
	c.retry = RetryPolicy{MaxAttempts: 4, BaseDelay: 50 * time.Millisecond, MaxDelay: time.Second, Jitter: 0.2}
	if _, err := c.Stats(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.count() != 3 {
		t.Fatalf("%d requests, want 3", s.count())
	}
	// Backoff doubles: 50 ms, then 100 ms (each + up to 20%).
	if gap := s.times[2].Sub(s.times[1]); gap < 100*time.Millisecond {
		t.Fatalf("second retry after %v, want >= 100ms", gap)
	}
}

func TestGivesUpAfterMaxAttemptsWithTheLastError(t *testing.T) {
	c, s := serve(t, answer{503, "", unavailable})
	c.retry = RetryPolicy{MaxAttempts: 3, BaseDelay: 10 * time.Millisecond, MaxDelay: time.Second}
	_, err := c.Stats(context.Background())
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 || apiErr.Code != "redis_unavailable" {
		t.Fatalf("err = %v", err)
	}
	if s.count() != 3 {
		t.Fatalf("%d requests, want 3", s.count())
	}
}

func TestNeverRetries4xx(t *testing.T) {
	for _, status := range []int{400, 401, 404, 409, 422} {
		c, s := serve(t, answer{status, "1", `{"error":{"code":"bad_request","message":"no","details":{"x":1}}}`})
		_, err := c.Stats(context.Background())
		var apiErr *Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != status {
			t.Fatalf("%d: err = %v", status, err)
		}
		if apiErr.Code != "bad_request" || apiErr.Message != "no" || apiErr.Details["x"] != 1.0 {
			t.Fatalf("%d: error body not carried: %+v", status, apiErr)
		}
		if s.count() != 1 {
			t.Fatalf("%d: %d requests, want 1 (a 4xx is never retried)", status, s.count())
		}
	}
}

func TestDeadlineShorterThanRetryAfterEndsTheCallAtOnce(t *testing.T) {
	c, s := serve(t, answer{503, "5", unavailable}, answer{200, "", statsBody})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Stats(ctx)
	if elapsed := time.Since(start); elapsed > 250*time.Millisecond {
		t.Fatalf("took %v: waited although the deadline is before the retry", elapsed)
	}
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 || apiErr.RetryAfter != 5*time.Second {
		t.Fatalf("err = %v", err)
	}
	if s.count() != 1 {
		t.Fatalf("%d requests, want 1", s.count())
	}
}

func TestCancelledContextEndsTheWait(t *testing.T) {
	c, s := serve(t, answer{503, "2", unavailable}, answer{200, "", statsBody})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.Stats(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Fatalf("took %v after the cancel", elapsed)
	}
	if s.count() != 1 {
		t.Fatalf("%d requests, want 1", s.count())
	}
}

func TestRetryAfterLongerThanMaxDelayIsNotWaitedFor(t *testing.T) {
	c, s := serve(t, answer{503, "3600", unavailable}, answer{200, "", statsBody})
	_, err := c.Stats(context.Background())
	if !IsUnavailable(err) || s.count() != 1 {
		t.Fatalf("err = %v after %d requests", err, s.count())
	}
}

func TestRetriedEnqueueResendsBodyAndIdempotencyKey(t *testing.T) {
	c, s := serve(t, answer{503, "0", unavailable}, answer{201, "", enqueued})
	c.retry.BaseDelay = 10 * time.Millisecond
	res, err := c.Enqueue(context.Background(), EnqueueRequest{Type: "noop", Data: map[string]any{"n": 1}})
	if err != nil {
		t.Fatal(err)
	}
	if res.JobID != "job_1" || res.Status != JobStatusPending || res.Enqueued.IsZero() {
		t.Fatalf("res = %+v", res)
	}
	first, second := s.requests[0], s.requests[1]
	if first.key == "" || first.key != second.key {
		t.Fatalf("Idempotency-Key %q then %q: want one made-up key on both", first.key, second.key)
	}
	if first.body != second.body || first.body != `{"type":"noop","data":{"n":1}}` {
		t.Fatalf("bodies %q then %q", first.body, second.body)
	}
}

func TestNotTheAPIsErrorBodyStillGivesAnError(t *testing.T) {
	c, _ := serve(t, answer{502, "", "<html>\n<body>Bad Gateway</body></html>"})
	_, err := c.Stats(context.Background())
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 502 || apiErr.Code != "http_502" {
		t.Fatalf("err = %v", err)
	}
	if apiErr.Message != "Bad Gateway: <html>" || string(apiErr.Body) == "" {
		t.Fatalf("message %q", apiErr.Message)
	}
}

func TestRetryAfterAsAnHTTPDate(t *testing.T) {
	now := time.Date(2024, 1, 15, 10, 30, 0, 0, time.UTC)
	h := http.Header{"Retry-After": {now.Add(3 * time.Second).Format(http.TimeFormat)}}
	if got := parseRetryAfter(h, now); got != 3*time.Second {
		t.Fatalf("got %v", got)
	}
	for _, v := range []string{"", "soon", "-1"} {
		if got := parseRetryAfter(http.Header{"Retry-After": {v}}, now); got != 0 {
			t.Fatalf("%q: got %v", v, got)
		}
	}
}
