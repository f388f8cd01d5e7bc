// Package fleetd is a client of fleetd's admin HTTP API: enqueue, inspect, cancel and
// reset background jobs, read queue statistics and worker health, manage scheduled
// jobs, run workflows (DAGs of jobs) and save and run templates.
//
// The types follow the background-jobs spec (Job, ScheduledJob, JobStatus,
// JobPriority, WorkerMetrics) plus the fields fleetd adds; JSON names are the API's.
// Every call takes a context.Context. Answers 503 and 429 are retried, honouring
// Retry-After (see RetryPolicy); every other error answer is returned at once as an
// *Error carrying the API's {"error": {"code", "message", "details"}} body.
//
// The package uses the standard library only.
//
//	client, err := fleetd.New("http://127.0.0.1:8080", fleetd.WithToken(token))
//	res, err := client.Enqueue(ctx, fleetd.EnqueueRequest{
//		Type:     "report_generation",
//		Data:     map[string]any{"report_type": "fleet_summary"},
//		Priority: fleetd.JobPriorityNormal,
//	})
package fleetd
