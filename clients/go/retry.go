package fleetd

// This file owns the retry policy: which answers are retried (503 and 429 only), how
// long to wait (the daemon's Retry-After, else exponential backoff) and the jitter that
// keeps many clients from coming back in the same instant.

import (
	"math/rand"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RetryPolicy says how a Client retries answers 503 (Service Unavailable: the daemon
// cannot reach Redis, or is stopping) and 429 (Too Many Requests). No other answer is
// retried: a 4xx means the request itself is wrong, and sending it again cannot help.
// Errors of the network (connection refused or reset) are not retried either, since
// the outcome of a request cut off mid-way is unknown.
//
// A request is resent unchanged. Enqueue and EnqueueBulk always carry an
// Idempotency-Key (their own, or one the client makes up), so a resent enqueue whose
// first attempt did reach Redis answers that job instead of enqueueing it twice.
type RetryPolicy struct {
	// MaxAttempts counts the first try: 1 never retries, 4 retries up to three times.
	MaxAttempts int
	// BaseDelay is the wait before the first retry when the answer has no
	// Retry-After; it doubles on each further retry.
	BaseDelay time.Duration
	// MaxDelay caps the backoff; a Retry-After longer than this ends the retries
	// (the error is returned) rather than blocking the caller for that long.
	MaxDelay time.Duration
	// Jitter adds a random 0..Jitter fraction to each wait, never less than the
	// daemon asked for: after an outage every client got the same Retry-After, and
	// without jitter they would all return in the same millisecond.
	Jitter float64
}

// DefaultRetryPolicy retries up to three times. fleetd answers 503 with Retry-After: 2
// (its Redis link reconnects with a backoff starting at 0.1 s), so three retries wait
// about 6-7 s in all: enough for a Redis restart or failover, short enough for a caller.
var DefaultRetryPolicy = RetryPolicy{
	MaxAttempts: 4,
	BaseDelay:   250 * time.Millisecond,
	MaxDelay:    30 * time.Second,
	Jitter:      0.2,
}

// next says whether to retry after attempt (1-based) failed with err, and how long to
// wait first.
func (p RetryPolicy) next(attempt int, err *Error) (time.Duration, bool) {
	if attempt >= p.MaxAttempts || !err.Retryable() {
		return 0, false
	}
	wait := err.RetryAfter
	if wait <= 0 {
		wait = p.BaseDelay
		for i := 1; i < attempt && (p.MaxDelay <= 0 || wait < p.MaxDelay); i++ {
			wait *= 2
		}
	}
	if p.MaxDelay > 0 && wait > p.MaxDelay {
		if err.RetryAfter > 0 {
			return 0, false
		}
		wait = p.MaxDelay
	}
	if p.Jitter > 0 {
		wait += time.Duration(float64(wait) * p.Jitter * random())
	}
	return wait, true
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date (RFC 9110
// §10.2.3). Zero when absent or unreadable.
func parseRetryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Go 1.19's math/rand top-level functions start from a fixed seed: every process would
// draw the same jitter. One seeded source behind a mutex instead.
var (
	rngMu sync.Mutex
	rng   = rand.New(rand.NewSource(time.Now().UnixNano()))
)

// random returns a number in [0, 1).
func random() float64 {
	rngMu.Lock()
	defer rngMu.Unlock()
	return rng.Float64()
}
