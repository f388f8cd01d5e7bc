package fleetd

// This file owns the workflow calls of the Client (docs/WORKFLOWS.md): run a DAG of
// jobs, look at it, cancel it and resume its failed nodes, with their types.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// WorkflowStatus is a workflow's status.
type WorkflowStatus string

// A workflow is running; failing or cancelling while nodes still run after a failure
// or a cancel; then completed, failed or cancelled.
const (
	WorkflowStatusRunning    WorkflowStatus = "running"
	WorkflowStatusFailing    WorkflowStatus = "failing"
	WorkflowStatusCancelling WorkflowStatus = "cancelling"
	WorkflowStatusCompleted  WorkflowStatus = "completed"
	WorkflowStatusFailed     WorkflowStatus = "failed"
	WorkflowStatusCancelled  WorkflowStatus = "cancelled"
)

// Terminal reports whether a workflow in this status has finished.
func (s WorkflowStatus) Terminal() bool {
	return s == WorkflowStatusCompleted || s == WorkflowStatusFailed || s == WorkflowStatusCancelled
}

// Edge is a dependency on a parent node and the parent's outcome it needs: "success"
// (the default: the parent completed), "failure" (it failed for good) or "any".
type Edge struct {
	Node string `json:"node"`
	On   string `json:"on,omitempty"`
}

// WorkflowNode is one node: an ordinary job with a name and its parents. The company
// and user are the workflow's.
type WorkflowNode struct {
	// Name is unique in the workflow; required in Nodes, defaulted in the shorthands
	// (step-1… in Chain, task-1… in Group, first, then).
	Name string `json:"name,omitempty"`
	Type string `json:"type"`
	// Data is the handler's input; a value {"$from": "<parent>.result.<field>"} is
	// replaced by that parent's result field when the node starts.
	Data       map[string]any `json:"data,omitempty"`
	Priority   JobPriority    `json:"priority,omitempty"`
	MaxRetries *int           `json:"max_retries,omitempty"`
	Timeout    time.Duration  `json:"-"`
	Tags       []string       `json:"tags,omitempty"`
	Encrypt    bool           `json:"encrypt,omitempty"`
	DependsOn  []Edge         `json:"depends_on,omitempty"`
	// Condition is a JMESPath expression over {"parents": {name: {"state",
	// "result"}}}: false (or empty, null) when the node starts skips it.
	Condition string `json:"condition,omitempty"`
	// WithParents loads the parents' results into the handler's context.
	WithParents bool `json:"with_parents,omitempty"`
}

type nodeFields WorkflowNode

// MarshalJSON writes the node with its timeout in seconds.
func (n WorkflowNode) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		nodeFields
		Timeout float64 `json:"timeout,omitempty"`
	}{nodeFields(n), n.Timeout.Seconds()})
}

// WorkflowRequest is a workflow to run: exactly one of Nodes, Chain (each node depends
// on the one before) or Group (a fan-out, with First before and Then after it).
type WorkflowRequest struct {
	// Name defaults to "workflow".
	Name string `json:"name,omitempty"`
	// CompanyID is forced to the token's company for a company-bound token.
	CompanyID string `json:"company_id,omitempty"`
	UserID    string `json:"user_id,omitempty"`
	// OnFailure "fail" (default): a failed node ends the nodes not started yet as
	// skipped; "continue": only what depends on it is skipped.
	OnFailure string         `json:"on_failure,omitempty"`
	Nodes     []WorkflowNode `json:"nodes,omitempty"`
	Chain     []WorkflowNode `json:"chain,omitempty"`
	Group     []WorkflowNode `json:"group,omitempty"`
	First     *WorkflowNode  `json:"first,omitempty"`
	Then      *WorkflowNode  `json:"then,omitempty"`
	// Priority is the default priority of nodes that give none.
	Priority JobPriority `json:"priority,omitempty"`
}

// WorkflowSubmitted is the answer of RunWorkflow.
type WorkflowSubmitted struct {
	WorkflowID string         `json:"workflow_id"`
	Status     WorkflowStatus `json:"status"`
	// Nodes maps each node's name to its job's id.
	Nodes     map[string]string `json:"nodes"`
	CreatedAt time.Time         `json:"created_at"`
}

// NodeState is one node of a workflow as GetWorkflow shows it. State is the
// workflow's view of the job: waiting (parents not all finished; WaitingOn names
// them), pending, processing, retrying, completed, failed, cancelled or skipped.
type NodeState struct {
	Name      string    `json:"name"`
	JobID     string    `json:"job_id"`
	Type      string    `json:"type"`
	State     string    `json:"state"`
	Status    JobStatus `json:"status"`
	DependsOn []Edge    `json:"depends_on"`
	WaitingOn []string  `json:"waiting_on"`
	Error     string    `json:"error,omitempty"`
}

// Workflow is a workflow and the state of each of its nodes.
type Workflow struct {
	ID         string         `json:"id"`
	Name       string         `json:"name"`
	Status     WorkflowStatus `json:"status"`
	OnFailure  string         `json:"on_failure"`
	CompanyID  string         `json:"company_id,omitempty"`
	UserID     string         `json:"user_id,omitempty"`
	CreatedAt  time.Time      `json:"created_at"`
	FinishedAt *time.Time     `json:"finished_at,omitempty"`
	Total      int            `json:"total"`
	// Counts holds the number of nodes in each state.
	Counts map[string]int `json:"counts"`
	Nodes  []NodeState    `json:"nodes"`
}

// Node returns the node named name, or nil.
func (w *Workflow) Node(name string) *NodeState {
	for i := range w.Nodes {
		if w.Nodes[i].Name == name {
			return &w.Nodes[i]
		}
	}
	return nil
}

// WorkflowCancelled is the answer of CancelWorkflow.
type WorkflowCancelled struct {
	WorkflowID string         `json:"workflow_id"`
	Status     WorkflowStatus `json:"status"`
	// Cancelled is false while running nodes are still being cancelled.
	Cancelled bool `json:"cancelled"`
}

// WorkflowResumed is the answer of ResumeWorkflow.
type WorkflowResumed struct {
	WorkflowID string         `json:"workflow_id"`
	Status     WorkflowStatus `json:"status"`
	// Resumed counts the nodes that run again.
	Resumed int `json:"resumed"`
}

func workflowPath(id string) string { return "/" + url.PathEscape(id) }

// RunWorkflow stores a workflow and queues its nodes without parents (POST
// /workflows); a bad request answers 422 naming each field, e.g. "chain[1].type".
// Like every call it is resent after a 503 or 429 as the RetryPolicy allows; a
// workflow carries no idempotency key, so a resent request whose first attempt did
// reach Redis stores a second workflow.
func (c *Client) RunWorkflow(ctx context.Context, req WorkflowRequest) (*WorkflowSubmitted, error) {
	var out WorkflowSubmitted
	r := call{prefix: workflowsPrefix, method: http.MethodPost, body: req}
	if err := c.do(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetWorkflow returns a workflow and its nodes (GET /workflows/{id}); IsNotFound(err)
// when there is none (or it is another company's).
func (c *Client) GetWorkflow(ctx context.Context, id string) (*Workflow, error) {
	var out struct {
		Workflow Workflow `json:"workflow"`
	}
	r := call{prefix: workflowsPrefix, method: http.MethodGet, path: workflowPath(id)}
	if err := c.do(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out.Workflow, nil
}

// CancelWorkflow cancels a workflow's nodes not finished yet (DELETE
// /workflows/{id}); Cancelled is false while running nodes are being stopped.
func (c *Client) CancelWorkflow(ctx context.Context, id string) (*WorkflowCancelled, error) {
	var out WorkflowCancelled
	r := call{prefix: workflowsPrefix, method: http.MethodDelete, path: workflowPath(id)}
	if err := c.do(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ResumeWorkflow runs a failed or cancelled workflow's failed, cancelled and skipped
// nodes again (POST /workflows/{id}/resume). Each node put back counts as one enqueued
// for the workflow's company: over its quota the answer is 429 "quota_exceeded", as for
// Reset, and the workflow is left as it was.
func (c *Client) ResumeWorkflow(ctx context.Context, id string) (*WorkflowResumed, error) {
	var out WorkflowResumed
	r := call{prefix: workflowsPrefix, method: http.MethodPost, path: workflowPath(id) + "/resume"}
	if err := c.do(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
