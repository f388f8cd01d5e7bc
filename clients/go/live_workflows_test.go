package fleetd_test

// Workflows, templates and named queues against a live daemon (see live_test.go).

import (
	"context"
	"errors"
	"testing"
	"time"

	fleetd "fleetd/clients/go"
)

func TestLiveWorkflowChainCompletes(t *testing.T) {
	c, ctx := live(t)
	sub, err := c.RunWorkflow(ctx, fleetd.WorkflowRequest{
		Name: unique("go-chain"),
		Chain: []fleetd.WorkflowNode{
			{Name: "first", Type: "noop", Data: map[string]any{"step": 1}},
			{Name: "second", Type: "noop", Data: map[string]any{"step": 2}, Timeout: 30 * time.Second},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if sub.WorkflowID == "" || sub.Status != fleetd.WorkflowStatusRunning || len(sub.Nodes) != 2 ||
		sub.Nodes["first"] == "" || sub.Nodes["second"] == "" || sub.CreatedAt.IsZero() {
		t.Fatalf("submitted %+v", sub)
	}
	wf := waitWorkflow(ctx, t, c, sub.WorkflowID)
	if wf.ID != sub.WorkflowID || wf.Status != fleetd.WorkflowStatusCompleted || wf.Total != 2 ||
		wf.Counts["completed"] != 2 || wf.FinishedAt == nil {
		t.Fatalf("workflow %+v", wf)
	}
	first, second := wf.Node("first"), wf.Node("second")
	if first == nil || second == nil {
		t.Fatalf("nodes %+v", wf.Nodes)
	}
	for _, n := range []*fleetd.NodeState{first, second} {
		if n.State != "completed" || n.Status != fleetd.JobStatusCompleted || n.JobID != sub.Nodes[n.Name] {
			t.Fatalf("node %+v", n)
		}
	}
	if len(second.DependsOn) != 1 || second.DependsOn[0].Node != "first" || second.DependsOn[0].On != "success" {
		t.Fatalf("edges of second %+v", second.DependsOn)
	}
	// Its nodes are ordinary jobs.
	job, err := c.Get(ctx, sub.Nodes["second"])
	if err != nil || job.Status != fleetd.JobStatusCompleted || job.Timeout != 30*time.Second {
		t.Fatalf("node job %+v %v", job, err)
	}
	// A finished workflow has nothing to cancel, and nothing failed to resume.
	if _, err := c.CancelWorkflow(ctx, sub.WorkflowID); !fleetd.IsConflict(err) {
		t.Fatalf("cancel of a completed workflow: %v", err)
	}
	if _, err := c.GetWorkflow(ctx, "wf_missing"); !fleetd.IsNotFound(err) {
		t.Fatalf("missing workflow: %v", err)
	}
	// Cleanup takes a finished workflow with its nodes' jobs.
	cleaned, err := c.Cleanup(ctx, 0)
	if err != nil || cleaned.Workflows < 1 || cleaned.Deleted < 2 {
		t.Fatalf("cleanup %+v, %v", cleaned, err)
	}
	if _, err := c.GetWorkflow(ctx, sub.WorkflowID); !fleetd.IsNotFound(err) {
		t.Fatalf("workflow after cleanup: %v", err)
	}
}

func TestLiveWorkflowCancelAndResume(t *testing.T) {
	c, ctx := live(t)
	// The second node waits on the first, which fails once for good (no retries).
	sub, err := c.RunWorkflow(ctx, fleetd.WorkflowRequest{
		Name: unique("go-resume"),
		Chain: []fleetd.WorkflowNode{
			{Type: "noop", Data: map[string]any{"fail_attempts": 1}, MaxRetries: fleetd.Ptr(0)},
			{Type: "noop"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	wf := waitWorkflow(ctx, t, c, sub.WorkflowID)
	if wf.Status != fleetd.WorkflowStatusFailed || wf.Node("step-1").State != "failed" ||
		wf.Node("step-2").State != "skipped" {
		t.Fatalf("workflow %+v", wf)
	}
	// Resumed, the failed node runs again (its attempt count past fail_attempts now).
	res, err := c.ResumeWorkflow(ctx, sub.WorkflowID)
	if err != nil {
		t.Fatal(err)
	}
	if res.WorkflowID != sub.WorkflowID || res.Resumed != 2 || res.Status != fleetd.WorkflowStatusRunning {
		t.Fatalf("resumed %+v", res)
	}
	if wf = waitWorkflow(ctx, t, c, sub.WorkflowID); wf.Status != fleetd.WorkflowStatusCompleted {
		t.Fatalf("resumed workflow %+v", wf)
	}

	// A workflow whose first node runs for a minute is cancelled while it runs.
	hold, err := c.RunWorkflow(ctx, fleetd.WorkflowRequest{
		Chain: []fleetd.WorkflowNode{{Type: "noop", Data: map[string]any{"sleep_ms": 60000}}, {Type: "noop"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	cancelled, err := c.CancelWorkflow(ctx, hold.WorkflowID)
	if err != nil {
		t.Fatal(err)
	}
	if cancelled.WorkflowID != hold.WorkflowID {
		t.Fatalf("cancelled %+v", cancelled)
	}
	if wf = waitWorkflow(ctx, t, c, hold.WorkflowID); wf.Status != fleetd.WorkflowStatusCancelled {
		t.Fatalf("cancelled workflow %+v", wf)
	}
}

// waitWorkflow polls a workflow until it has finished.
func waitWorkflow(ctx context.Context, t *testing.T, c *fleetd.Client, id string) *fleetd.Workflow {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		wf, err := c.GetWorkflow(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if wf.Status.Terminal() {
			return wf
		}
		if time.Now().After(deadline) {
			t.Fatalf("workflow %s still %s after %v: %+v", id, wf.Status, waitLimit, wf.Nodes)
		}
		time.Sleep(poll)
	}
}

func TestLiveTemplateSaveRunDelete(t *testing.T) {
	c, ctx := live(t)
	name := unique("go-tpl")
	saved, err := c.SaveTemplate(ctx, fleetd.TemplateRequest{
		Name:        name,
		Description: "a noop with a count",
		Params: map[string]any{
			"type":       "object",
			"properties": map[string]any{"count": map[string]any{"type": "integer", "minimum": 1}},
			"required":   []any{"count"},
		},
		Job: &fleetd.EnqueueRequest{Type: "noop", Data: map[string]any{"count": fleetd.Param("count")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if saved.Name != name || saved.Version != 1 || saved.Latest != 1 || saved.Kind != "job" || saved.CreatedAt.IsZero() {
		t.Fatalf("saved %+v", saved)
	}
	got, err := c.GetTemplate(ctx, name, 1)
	if err != nil || got.Name != name || got.Description != "a noop with a count" || got.Job["type"] != "noop" {
		t.Fatalf("get %+v %v", got, err)
	}
	all, err := c.ListTemplates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tpl := range all {
		found = found || tpl.Name == name
	}
	if !found {
		t.Fatalf("%s not listed in %+v", name, all)
	}

	run, err := c.RunTemplate(ctx, name, map[string]any{"count": 3}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if run.Template != name || run.Version != 1 || run.Kind != "job" || run.JobID == "" || run.WorkflowID != "" {
		t.Fatalf("run %+v", run)
	}
	job := waitStatus(ctx, t, c, run.JobID, fleetd.JobStatusCompleted)
	if job.Type != "noop" || job.Data["count"] != 3.0 {
		t.Fatalf("job %+v", job)
	}

	// Bad parameters: a 422 naming the field, and no job.
	_, err = c.RunTemplate(ctx, name, map[string]any{"count": 0}, 0)
	if !fleetd.IsValidation(err) {
		t.Fatalf("run with count 0: %v", err)
	}
	var apiErr *fleetd.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("not the typed error: %T %v", err, err)
	}
	if msg, ok := apiErr.Field("params.count"); !ok || msg == "" {
		t.Fatalf("fields %+v", apiErr.Fields())
	}

	if err := c.DeleteTemplate(ctx, name); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetTemplate(ctx, name, 0); !fleetd.IsNotFound(err) {
		t.Fatalf("deleted template: %v", err)
	}
	if _, err := c.RunTemplate(ctx, name, nil, 0); !fleetd.IsNotFound(err) {
		t.Fatalf("run of a deleted template: %v", err)
	}
}

func TestLiveEnqueueIntoANamedQueue(t *testing.T) {
	c, ctx := live(t)
	later := time.Now().Add(time.Hour)
	res, err := c.Enqueue(ctx, fleetd.EnqueueRequest{Type: "noop", Queue: "go-reports", RunAt: &later})
	if err != nil {
		t.Fatal(err)
	}
	if res.Spooled() || res.Ran != "" || res.Status != fleetd.JobStatusPending {
		t.Fatalf("enqueue answer %+v", res)
	}
	job, err := c.Get(ctx, res.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if job.Queue != "go-reports" {
		t.Fatalf("job queue %q, want go-reports", job.Queue)
	}
	plain := enqueue(ctx, t, c, fleetd.EnqueueRequest{Type: "noop", RunAt: &later})
	if job, err = c.Get(ctx, plain); err != nil || job.Queue != "default" {
		t.Fatalf("job without a queue: %+v %v", job, err)
	}
	// A bad queue name is a 422 on the field.
	_, err = c.Enqueue(ctx, fleetd.EnqueueRequest{Type: "noop", Queue: "no spaces!"})
	var apiErr *fleetd.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 422 {
		t.Fatalf("bad queue: %v", err)
	}
	if _, ok := apiErr.Field("queue"); !ok {
		t.Fatalf("fields %+v", apiErr.Fields())
	}
	for _, id := range []string{res.JobID, plain} {
		if _, err := c.Cancel(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
}
