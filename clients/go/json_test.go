package fleetd

// The JSON forms offline: the spec's example bodies decode into the typed values, and
// requests encode only what the API accepts (it refuses unknown fields).

import (
	"encoding/json"
	"testing"
	"time"
)

func TestSpecJobBodyDecodes(t *testing.T) {
	// The spec's GET /jobs/{id} example, with fleetd's timeout and attempts.
	body := `{"job": {"id": "job_1234567890", "type": "email_notification", "status": "completed",
		"data": {"to": "user@example.com"}, "priority": 5,
		"created_at": "2024-01-15T10:30:00Z", "completed_at": "2024-01-15T10:30:05.250Z",
		"retry_count": 0, "max_retries": 3, "timeout": 1.5, "attempts": 1,
		"result": {"processing_time": "5s", "worker_id": 1}}, "status": "completed"}`
	var out struct {
		Job Job `json:"job"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	j := out.Job
	if j.ID != "job_1234567890" || j.Status != JobStatusCompleted || j.Priority != JobPriorityNormal ||
		j.Timeout != 1500*time.Millisecond || j.Attempts != 1 || j.Result["worker_id"] != 1.0 {
		t.Fatalf("%+v", j)
	}
	if j.StartedAt != nil || j.CompletedAt.Sub(j.CreatedAt) != 5250*time.Millisecond {
		t.Fatalf("times %v %v %v", j.CreatedAt, j.StartedAt, j.CompletedAt)
	}
	// And back: the timeout is seconds again, omitted fields stay omitted.
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	var again map[string]any
	if err := json.Unmarshal(b, &again); err != nil {
		t.Fatal(err)
	}
	if again["timeout"] != 1.5 || again["started_at"] != nil || again["max_retries"] != 3.0 {
		t.Fatalf("%s", b)
	}
}

func TestSpecWorkerBodiesDecode(t *testing.T) {
	var m struct {
		Metrics WorkerMetrics `json:"metrics"`
	}
	body := `{"metrics": {"jobs_processed": 1000, "jobs_succeeded": 950, "jobs_failed": 50,
		"jobs_retried": 25, "average_job_time": "2.5s", "total_job_time": "2500s",
		"last_job_time": "2024-01-15T10:30:00Z", "start_time": "2024-01-15T09:00:00Z",
		"uptime": "1h30m"}}`
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	if m.Metrics.AverageJobTime != 2500*time.Millisecond || m.Metrics.TotalJobTime != 2500*time.Second ||
		m.Metrics.Uptime != 90*time.Minute || m.Metrics.JobsRetried != 25 {
		t.Fatalf("%+v", m.Metrics)
	}
	var h WorkerHealth
	body = `{"status": "healthy", "uptime": "1h30m", "jobs_processed": 1000, "jobs_succeeded": 950,
		"jobs_failed": 50, "jobs_retried": 25, "average_job_time": "2.5s",
		"last_job_time": "2024-01-15T10:30:00Z", "concurrency": 5, "success_rate": 95.0}`
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatal(err)
	}
	if h.Status != HealthHealthy || h.Uptime != 90*time.Minute || h.AverageJobTime != 2500*time.Millisecond ||
		h.Concurrency != 5 || h.SuccessRate != 95 {
		t.Fatalf("%+v", h)
	}
	if err := json.Unmarshal([]byte(`{"uptime": "soon"}`), &h); err == nil {
		t.Fatal("a bad duration was accepted")
	}
}

func TestEnqueueRequestEncodesOnlyWhatIsSet(t *testing.T) {
	b, err := json.Marshal(EnqueueRequest{Type: "noop"})
	if err != nil || string(b) != `{"type":"noop"}` {
		t.Fatalf("%s %v", b, err)
	}
	at := time.Date(2024, 1, 15, 11, 30, 0, 123456789, time.FixedZone("CET", 3600))
	b, err = json.Marshal(EnqueueRequest{
		Type: "report_generation", Priority: JobPriorityCritical, MaxRetries: Ptr(0),
		Timeout: 90 * time.Second, RunAt: &at, Tags: []string{"a"}, Encrypt: true,
	})
	want := `{"type":"report_generation","priority":20,"max_retries":0,"tags":["a"],` +
		`"encrypt":true,"timeout":90,"run_at":"2024-01-15T10:30:00.123Z"}`
	if err != nil || string(b) != want {
		t.Fatalf("%s %v", b, err)
	}
}

func TestScheduledJobUpdateEncodesOnlyTheChanges(t *testing.T) {
	b, err := json.Marshal(ScheduledJobUpdate{IsActive: Ptr(false), Data: map[string]any{}, UserID: Ptr("")})
	if err != nil || string(b) != `{"data":{},"is_active":false,"user_id":""}` {
		t.Fatalf("%s %v", b, err)
	}
	b, err = json.Marshal(ScheduledJobRequest{Name: "n", JobType: "noop", Schedule: "@daily"})
	if err != nil || string(b) != `{"name":"n","job_type":"noop","schedule":"@daily"}` {
		t.Fatalf("%s %v", b, err)
	}
}

func TestFormatDurationIsFleetdSyntax(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                    "0s",
		500 * time.Millisecond:               "500ms",
		1500 * time.Millisecond:              "1.5s",
		90 * time.Minute:                     "1h30m0s",
		24 * time.Hour:                       "24h0m0s",
		1500*time.Microsecond + 1:            "2ms",
		2*time.Second + 400*time.Microsecond: "2s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestNewRefusesWhatIsNotABaseURL(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:8080", "ftp://h", "http://", "http://h/?x=1", "http://h/#f"} {
		if _, err := New(u); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
	c, err := New("https://ops.example.com/fleetd/")
	if err != nil || c.base != "https://ops.example.com/fleetd" {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestEnqueueAnswersDecode(t *testing.T) {
	// 202 while Redis is away (docs/OPERATIONS.md): the job waits in the daemon's spool.
	var spooled Enqueued
	body := `{"job_id": "job_01HZX", "status": "spooled", "enqueued": "2024-01-15T10:30:00.000Z"}`
	if err := json.Unmarshal([]byte(body), &spooled); err != nil {
		t.Fatal(err)
	}
	if !spooled.Spooled() || spooled.JobID != "job_01HZX" || spooled.Duplicate || spooled.Ran != "" {
		t.Fatalf("%+v", spooled)
	}
	// 200 after a sync fallback: the job ran on the daemon, with its outcome.
	var ran Enqueued
	body = `{"job_id": "job_01HZY", "status": "completed", "enqueued": "2024-01-15T10:30:00.000Z",
		"ran": "sync", "result": {"rows": 3}}`
	if err := json.Unmarshal([]byte(body), &ran); err != nil {
		t.Fatal(err)
	}
	if ran.Spooled() || ran.Ran != "sync" || ran.Status != JobStatusCompleted || ran.Result["rows"] != 3.0 {
		t.Fatalf("%+v", ran)
	}
	var failed Enqueued
	body = `{"job_id": "job_01HZZ", "status": "failed", "enqueued": "2024-01-15T10:30:00.000Z",
		"ran": "bypass", "error": "boom"}`
	if err := json.Unmarshal([]byte(body), &failed); err != nil {
		t.Fatal(err)
	}
	if failed.Ran != "bypass" || failed.Status != JobStatusFailed || failed.Error != "boom" {
		t.Fatalf("%+v", failed)
	}
}

func TestEnqueueQueueFallbackBypassEncode(t *testing.T) {
	req := EnqueueRequest{Type: "noop", Queue: "reports", Fallback: FallbackSync, Bypass: true,
		Priority: JobPriorityCritical}
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got["queue"] != "reports" || got["fallback"] != "sync" || got["bypass"] != true {
		t.Fatalf("%s", b)
	}
	// Left at zero, none is sent: the bulk body refuses fallback and bypass.
	if b, err = json.Marshal(EnqueueRequest{Type: "noop"}); err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"type":"noop"}` {
		t.Fatalf("%s", b)
	}
}

func TestWorkflowBodiesEncodeAndDecode(t *testing.T) {
	req := WorkflowRequest{Chain: []WorkflowNode{
		{Type: "noop", Timeout: 1500 * time.Millisecond},
		{Type: "noop", DependsOn: []Edge{{Node: "step-1", On: "any"}}},
	}}
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"chain":[{"type":"noop","timeout":1.5},{"type":"noop","depends_on":[{"node":"step-1","on":"any"}]}]}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	var out struct {
		Workflow Workflow `json:"workflow"`
	}
	body := `{"workflow": {"id": "wf_1", "name": "w", "status": "failing", "on_failure": "fail",
		"created_at": "2024-01-15T10:30:00.000Z", "total": 2, "counts": {"failed": 1, "processing": 1},
		"nodes": [{"name": "a", "job_id": "job_a", "type": "noop", "state": "failed", "status": "failed",
		"depends_on": [], "waiting_on": [], "error": "boom"}]}}`
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	w := out.Workflow
	if w.Status != WorkflowStatusFailing || w.Status.Terminal() || w.FinishedAt != nil || w.Counts["failed"] != 1 {
		t.Fatalf("%+v", w)
	}
	if n := w.Node("a"); n == nil || n.Error != "boom" || n.Status != JobStatusFailed || w.Node("b") != nil {
		t.Fatalf("%+v", w.Nodes)
	}
}
