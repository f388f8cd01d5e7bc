package fleetd

// This file owns Error, the typed value of every error answer of the API, and the
// helpers that classify it.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Error is an error answer of the API: its HTTP status and the body
// {"error": {"code", "message", "details"}}. Use errors.As to get it:
//
//	var apiErr *fleetd.Error
//	if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusConflict { … }
type Error struct {
	// StatusCode is the HTTP status: 400, 401, 403, 404, 409, 413, 415, 422, 429, 503…
	StatusCode int
	// Code is the API's machine-readable code, e.g. "validation_failed", "not_found",
	// "conflict", "unauthorized", "redis_unavailable".
	Code string
	// Message is the API's human-readable message.
	Message string
	// Details holds the code's details: "fields" for a 422 (see Fields), "status" for
	// a 409 on cancel or reset.
	Details map[string]any
	// RetryAfter is the wait the daemon asked for (Retry-After), zero when none.
	RetryAfter time.Duration
	// Body is the raw answer, kept for answers that are not the API's (a proxy's page).
	Body []byte
}

// FieldError is one refused field of a 422 answer: a path such as "priority",
// "data.to" or "jobs[3].type", and why.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error renders "fleetd: 404 not_found: no job 'job_…'".
func (e *Error) Error() string {
	return fmt.Sprintf("fleetd: %d %s: %s", e.StatusCode, e.Code, e.Message)
}

// Retryable reports whether the same request may succeed later: 503 and 429.
func (e *Error) Retryable() bool {
	return e.StatusCode == http.StatusServiceUnavailable || e.StatusCode == http.StatusTooManyRequests
}

// Fields lists the refused fields of a 422 answer (nil for other answers).
func (e *Error) Fields() []FieldError {
	raw, ok := e.Details["fields"].([]any)
	if !ok {
		return nil
	}
	out := make([]FieldError, 0, len(raw))
	for _, item := range raw {
		m, ok := item.(map[string]any)
		if !ok {
			continue
		}
		field, _ := m["field"].(string)
		message, _ := m["message"].(string)
		out = append(out, FieldError{Field: field, Message: message})
	}
	return out
}

// Field returns the message of the refused field named name, and whether it is there.
func (e *Error) Field(name string) (string, bool) {
	for _, f := range e.Fields() {
		if f.Field == name {
			return f.Message, true
		}
	}
	return "", false
}

// IsNotFound reports whether err is a 404 answer: no such job or schedule (or one of
// another company, which a company-bound token cannot tell apart).
func IsNotFound(err error) bool { return hasStatus(err, http.StatusNotFound) }

// IsConflict reports whether err is a 409 answer, e.g. cancelling a finished job,
// resetting a job that is not failed or cancelled, or a schedule name already taken.
func IsConflict(err error) bool { return hasStatus(err, http.StatusConflict) }

// IsValidation reports whether err is a 422 answer; Fields says which fields.
func IsValidation(err error) bool { return hasStatus(err, http.StatusUnprocessableEntity) }

// IsUnauthorized reports whether err is a 401 answer: a missing, malformed, expired or
// wrongly signed token.
func IsUnauthorized(err error) bool { return hasStatus(err, http.StatusUnauthorized) }

// IsUnavailable reports whether err is a 503 answer: the daemon could not reach Redis
// in time (or is stopping). After a 503 on enqueue the outcome is unknown: enqueue again
// with the same idempotency key.
func IsUnavailable(err error) bool { return hasStatus(err, http.StatusServiceUnavailable) }

func hasStatus(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.StatusCode == status
}

// newError builds the Error of an answer; a body that is not the API's error body
// (e.g. a proxy's HTML page) still gives the status, a code and its first line.
func newError(status int, header http.Header, body []byte) *Error {
	e := &Error{
		StatusCode: status,
		RetryAfter: parseRetryAfter(header, time.Now()),
		Body:       body,
	}
	var envelope struct {
		Error *struct {
			Code    string         `json:"code"`
			Message string         `json:"message"`
			Details map[string]any `json:"details"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &envelope) == nil && envelope.Error != nil {
		e.Code = envelope.Error.Code
		e.Message = envelope.Error.Message
		e.Details = envelope.Error.Details
		return e
	}
	e.Code = fmt.Sprintf("http_%d", status)
	e.Message = http.StatusText(status)
	if first, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n"); first != "" {
		const maxQuoted = 200 // enough to recognise a proxy's page, short enough for a log
		if len(first) > maxQuoted {
			first = first[:maxQuoted] + "…"
		}
		e.Message += ": " + first
	}
	return e
}
