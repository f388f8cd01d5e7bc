// Command scheduled_job is the spec's second example, "Create a Scheduled Job", against
// the Go client: a weekly maintenance check for one company and user. Names are unique
// per company, so running it twice reports the schedule that is already there.
//
//	go run ./examples/scheduled_job -company 3f0c…-uuid -user u-42
//
// The daemon's URL and token come from -url and -token, or FLEETD_URL and FLEETD_TOKEN.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	fleetd "fleetd/clients/go"
)

func main() {
	url := flag.String("url", envOr("FLEETD_URL", "http://127.0.0.1:8080"), "the daemon's base URL")
	token := flag.String("token", os.Getenv("FLEETD_TOKEN"), "an admin bearer token (fleetd token)")
	companyID := flag.String("company", "", "the company the check is for")
	userID := flag.String("user", "", "the user who set it up")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, *url, *token, *companyID, *userID); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, url, token, companyID, userID string) error {
	client, err := fleetd.New(url, fleetd.WithToken(token))
	if err != nil {
		return err
	}

	scheduledJob := fleetd.ScheduledJobRequest{
		Name:    "Weekly Maintenance Check",
		JobType: "maintenance_reminder",
		Data: map[string]any{
			"maintenance_type": "routine_check",
		},
		Schedule:  "@weekly",
		Priority:  fleetd.JobPriorityNormal,
		IsActive:  fleetd.Ptr(true),
		CompanyID: companyID,
		UserID:    userID,
	}

	created, err := client.CreateScheduledJob(ctx, scheduledJob)
	if fleetd.IsConflict(err) {
		existing, findErr := find(ctx, client, scheduledJob.Name, companyID)
		if findErr != nil {
			return findErr
		}
		fmt.Printf("scheduled job %s already exists, next run %s\n",
			existing.ID, existing.NextRun.Format(time.RFC3339))
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to create scheduled job: %w", err)
	}
	fmt.Printf("created scheduled job %s (%s %s), next run %s\n",
		created.ID, created.JobType, created.Schedule, created.NextRun.Format(time.RFC3339))
	return nil
}

// find returns the schedule with this name in this company.
func find(ctx context.Context, client *fleetd.Client, name, companyID string) (*fleetd.ScheduledJob, error) {
	all, err := client.ListScheduledJobs(ctx)
	if err != nil {
		return nil, fmt.Errorf("failed to list scheduled jobs: %w", err)
	}
	for i := range all {
		if all[i].Name == name && all[i].CompanyID == companyID {
			return &all[i], nil
		}
	}
	return nil, fmt.Errorf("scheduled job %q of company %q: conflict, yet not listed", name, companyID)
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
