package fleetd

// This file owns the template calls of the Client: save a job or workflow body with
// {"$param": name} placeholders and a JSON Schema of its parameters, list, get, run
// (which creates the job or the workflow) and delete.

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Param is the placeholder of a template's parameter: Param("month") in a job's Data
// becomes that parameter's value when the template runs.
func Param(name string) map[string]any { return map[string]any{"$param": name} }

// TemplateRequest is a template to save; each save of a name is a new version.
// Exactly one of Job and Workflow is given.
type TemplateRequest struct {
	// Name: 1 to 64 letters, digits, '_', '.' or '-'.
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// CompanyID empty: the platform's template (every company may run it); forced to
	// the token's company for a company-bound token.
	CompanyID string `json:"company_id,omitempty"`
	// Params is the JSON Schema of the parameters (an object; nil: any object).
	Params map[string]any `json:"params,omitempty"`
	// Job is an enqueue body, placeholders allowed.
	Job *EnqueueRequest `json:"job,omitempty"`
	// Workflow is a workflow body, placeholders allowed.
	Workflow *WorkflowRequest `json:"workflow,omitempty"`
}

// Template is a stored version of a template. Job or Workflow is its body as saved,
// placeholders included, in the API's JSON form.
type Template struct {
	Name        string         `json:"name"`
	Description string         `json:"description,omitempty"`
	CompanyID   string         `json:"company_id,omitempty"`
	Params      map[string]any `json:"params"`
	Job         map[string]any `json:"job,omitempty"`
	Workflow    map[string]any `json:"workflow,omitempty"`
	// Kind is "job" or "workflow".
	Kind    string `json:"kind"`
	Version int    `json:"version"`
	// Latest is the newest version of this name.
	Latest    int       `json:"latest"`
	CreatedAt time.Time `json:"created_at"`
}

// TemplateRun is the answer of RunTemplate: the job or the workflow it created.
type TemplateRun struct {
	Template string `json:"template"`
	Version  int    `json:"version"`
	// Kind is "job" (JobID set) or "workflow" (WorkflowID set).
	Kind       string `json:"kind"`
	JobID      string `json:"job_id,omitempty"`
	WorkflowID string `json:"workflow_id,omitempty"`
}

func templatePath(name string) string { return "/" + url.PathEscape(name) }

// SaveTemplate stores a new version of a template (POST /templates); a bad
// declaration answers 422 naming each field (e.g. "job.data.month" for a placeholder
// that is not a declared parameter).
func (c *Client) SaveTemplate(ctx context.Context, req TemplateRequest) (*Template, error) {
	var out struct {
		Template Template `json:"template"`
	}
	r := call{prefix: templatesPrefix, method: http.MethodPost, body: req}
	if err := c.do(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out.Template, nil
}

// ListTemplates returns the latest version of each template the token may see
// (GET /templates): a company's own and the platform's.
func (c *Client) ListTemplates(ctx context.Context) ([]Template, error) {
	var out struct {
		Templates []Template `json:"templates"`
	}
	if err := c.do(ctx, call{prefix: templatesPrefix, method: http.MethodGet}, &out); err != nil {
		return nil, err
	}
	return out.Templates, nil
}

// GetTemplate returns one version of a template (0: the latest) (GET
// /templates/{name}); IsNotFound(err) when there is none.
func (c *Client) GetTemplate(ctx context.Context, name string, version int) (*Template, error) {
	q := url.Values{}
	if version != 0 {
		q.Set("version", strconv.Itoa(version))
	}
	var out struct {
		Template Template `json:"template"`
	}
	r := call{prefix: templatesPrefix, method: http.MethodGet, path: templatePath(name), query: q}
	if err := c.do(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out.Template, nil
}

// RunTemplate fills in params and creates the template's job or workflow (POST
// /templates/{name}/run), from version (0: the latest). Parameters that do not
// match the schema answer 422 with every problem under "params." (IsValidation,
// Error.Field). Like RunWorkflow it has no idempotency key: a run resent after a
// 503 whose first attempt reached Redis creates a second job.
func (c *Client) RunTemplate(
	ctx context.Context, name string, params map[string]any, version int,
) (*TemplateRun, error) {
	body := struct {
		Params  map[string]any `json:"params"`
		Version int            `json:"version,omitempty"`
	}{Params: params, Version: version}
	if body.Params == nil {
		body.Params = map[string]any{}
	}
	var out TemplateRun
	r := call{prefix: templatesPrefix, method: http.MethodPost, path: templatePath(name) + "/run", body: body}
	if err := c.do(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteTemplate deletes every version of a template (DELETE /templates/{name});
// IsNotFound(err) when there is none.
func (c *Client) DeleteTemplate(ctx context.Context, name string) error {
	r := call{prefix: templatesPrefix, method: http.MethodDelete, path: templatePath(name)}
	return c.do(ctx, r, nil)
}
