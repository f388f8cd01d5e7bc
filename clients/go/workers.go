package fleetd

// This file owns the worker calls: the spec's WorkerMetrics (summed over every live
// daemon, plus each daemon's own) and the workers' health, with the duration strings
// the API writes ("2.5s", "1h30m") read into time.Duration.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// WorkerMetrics is the spec's WorkerMetrics.
type WorkerMetrics struct {
	JobsProcessed  int64         `json:"jobs_processed"`
	JobsSucceeded  int64         `json:"jobs_succeeded"`
	JobsFailed     int64         `json:"jobs_failed"`
	JobsRetried    int64         `json:"jobs_retried"`
	AverageJobTime time.Duration `json:"-"`
	TotalJobTime   time.Duration `json:"-"`
	// LastJobTime is zero before the first job finished.
	LastJobTime time.Time     `json:"last_job_time"`
	StartTime   time.Time     `json:"start_time"`
	Uptime      time.Duration `json:"-"`
}

type metricsFields WorkerMetrics

type metricsJSON struct {
	metricsFields
	AverageJobTime duration `json:"average_job_time"`
	TotalJobTime   duration `json:"total_job_time"`
	Uptime         duration `json:"uptime"`
}

// UnmarshalJSON reads the API's metrics object.
func (m *WorkerMetrics) UnmarshalJSON(b []byte) error {
	var aux metricsJSON
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*m = WorkerMetrics(aux.metricsFields)
	m.AverageJobTime = time.Duration(aux.AverageJobTime)
	m.TotalJobTime = time.Duration(aux.TotalJobTime)
	m.Uptime = time.Duration(aux.Uptime)
	return nil
}

// MarshalJSON writes the API's metrics object.
func (m WorkerMetrics) MarshalJSON() ([]byte, error) {
	return json.Marshal(metricsJSON{
		metricsFields(m), duration(m.AverageJobTime), duration(m.TotalJobTime), duration(m.Uptime),
	})
}

// DaemonInfo is one live daemon as its heartbeat describes it.
type DaemonInfo struct {
	DaemonID    string        `json:"daemon_id"`
	Host        string        `json:"host"`
	PID         int           `json:"pid"`
	Roles       []string      `json:"roles"`
	Concurrency int           `json:"concurrency"`
	Running     int           `json:"running"`
	Ready       bool          `json:"ready"`
	JobTypes    []string      `json:"job_types"`
	Alerts      []string      `json:"alerts"`
	Metrics     WorkerMetrics `json:"metrics"`
	HeartbeatAt time.Time     `json:"heartbeat_at"`
}

// WorkerMetricsReport is the answer of WorkerMetrics.
type WorkerMetricsReport struct {
	// Metrics sums every live daemon's; Uptime runs from the earliest start.
	Metrics WorkerMetrics `json:"metrics"`
	Daemons []DaemonInfo  `json:"daemons"`
}

// WorkerMetrics returns the workers' metrics (GET /worker/metrics).
func (c *Client) WorkerMetrics(ctx context.Context) (*WorkerMetricsReport, error) {
	var out WorkerMetricsReport
	if err := c.do(ctx, call{method: http.MethodGet, path: "/worker/metrics"}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// HealthStatus is the workers' overall state.
type HealthStatus string

// The health statuses: unhealthy when no worker daemon is alive; degraded when the
// failure rate or the backlog is over the daemon's alert thresholds.
const (
	HealthHealthy   HealthStatus = "healthy"
	HealthDegraded  HealthStatus = "degraded"
	HealthUnhealthy HealthStatus = "unhealthy"
)

// WorkerHealth is the spec's worker health, plus failure rate, backlog, the number of
// live worker daemons and the reasons of a status other than healthy.
type WorkerHealth struct {
	Status         HealthStatus  `json:"status"`
	Uptime         time.Duration `json:"-"`
	JobsProcessed  int64         `json:"jobs_processed"`
	JobsSucceeded  int64         `json:"jobs_succeeded"`
	JobsFailed     int64         `json:"jobs_failed"`
	JobsRetried    int64         `json:"jobs_retried"`
	AverageJobTime time.Duration `json:"-"`
	LastJobTime    time.Time     `json:"last_job_time"`
	Concurrency    int           `json:"concurrency"`
	// SuccessRate and FailureRate are percentages of the jobs processed.
	SuccessRate float64 `json:"success_rate"`
	FailureRate float64 `json:"failure_rate"`
	// Backlog counts the jobs ready to run and waiting for a worker.
	Backlog int64    `json:"backlog"`
	Workers int      `json:"workers"`
	Reasons []string `json:"reasons"`
}

type healthFields WorkerHealth

type healthJSON struct {
	healthFields
	Uptime         duration `json:"uptime"`
	AverageJobTime duration `json:"average_job_time"`
}

// UnmarshalJSON reads the API's health object.
func (h *WorkerHealth) UnmarshalJSON(b []byte) error {
	var aux healthJSON
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*h = WorkerHealth(aux.healthFields)
	h.Uptime = time.Duration(aux.Uptime)
	h.AverageJobTime = time.Duration(aux.AverageJobTime)
	return nil
}

// MarshalJSON writes the API's health object.
func (h WorkerHealth) MarshalJSON() ([]byte, error) {
	return json.Marshal(healthJSON{healthFields(h), duration(h.Uptime), duration(h.AverageJobTime)})
}

// WorkerHealth returns the workers' health (GET /worker/health).
func (c *Client) WorkerHealth(ctx context.Context) (*WorkerHealth, error) {
	var out WorkerHealth
	if err := c.do(ctx, call{method: http.MethodGet, path: "/worker/health"}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// duration is a time.Duration in the API's JSON form: a string such as "250ms",
// "2.5s" or "1h30m" (fleetd writes no d or w units there, so Go's syntax reads it).
type duration time.Duration

func (d duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(formatDuration(time.Duration(d)))
}

func (d *duration) UnmarshalJSON(b []byte) error {
	var s *string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("fleetd: duration: %w", err)
	}
	if s == nil {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(*s)
	if err != nil {
		return fmt.Errorf("fleetd: duration: %w", err)
	}
	*d = duration(v)
	return nil
}
