// Command enqueue_report is the spec's first example, "Enqueue a Report Generation
// Job", against the Go client: it enqueues a fleet summary report for one company and
// user, prints the job's id, and with -wait follows the job until it finishes.
//
//	go run ./examples/enqueue_report -company 3f0c…-uuid -user u-42 -wait
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

// pollInterval is how often -wait looks at the job: a report takes seconds, so a
// quarter second shows its end promptly without loading the daemon.
const pollInterval = 250 * time.Millisecond

func main() {
	url := flag.String("url", envOr("FLEETD_URL", "http://127.0.0.1:8080"), "the daemon's base URL")
	token := flag.String("token", os.Getenv("FLEETD_TOKEN"), "an admin bearer token (fleetd token)")
	companyID := flag.String("company", "", "the company the report is for (a fleet-data company UUID)")
	userID := flag.String("user", "", "the user who asked for it")
	wait := flag.Duration("wait", 0, "wait this long for the job to finish (0: do not wait)")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second+*wait)
	defer cancel()
	if err := run(ctx, *url, *token, *companyID, *userID, *wait); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, url, token, companyID, userID string, wait time.Duration) error {
	client, err := fleetd.New(url, fleetd.WithToken(token))
	if err != nil {
		return err
	}

	job := fleetd.EnqueueRequest{
		Type: "report_generation",
		Data: map[string]any{
			"report_type": "fleet_summary",
			"start_date":  "2024-01-01",
			"end_date":    "2024-01-31",
		},
		Priority:  fleetd.JobPriorityNormal,
		CompanyID: companyID,
		UserID:    userID,
	}

	enqueued, err := client.Enqueue(ctx, job)
	if err != nil {
		return fmt.Errorf("failed to enqueue report job: %w", err)
	}
	fmt.Printf("enqueued report job %s (%s)\n", enqueued.JobID, enqueued.Status)

	if wait <= 0 {
		return nil
	}
	deadline := time.Now().Add(wait)
	for {
		got, err := client.Get(ctx, enqueued.JobID)
		if err != nil {
			return fmt.Errorf("failed to read report job: %w", err)
		}
		if got.Status.Terminal() {
			fmt.Printf("job %s %s", got.ID, got.Status)
			if got.Error != "" {
				fmt.Printf(": %s", got.Error)
			}
			fmt.Println()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("job %s still %s after %v", got.ID, got.Status, wait)
		}
		time.Sleep(pollInterval)
	}
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
