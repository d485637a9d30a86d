package queueclient

import (
	"context"
	"net/http"

	"github.com/af-project/af/internal/taskdef"
)

// CreateSchedule stores a new schedule; af serve makes its runs.
func (c *Client) CreateSchedule(ctx context.Context, s taskdef.ScheduleSpec) (taskdef.ScheduleStatus, error) {
	var out taskdef.ScheduleStatus
	err := c.do(ctx, request{method: http.MethodPost, path: "/api/v1/schedules", body: s}, &out)
	return out, err
}

// Schedules lists the schedules the caller may read.
func (c *Client) Schedules(ctx context.Context) ([]taskdef.ScheduleStatus, error) {
	var out taskdef.ScheduleList
	err := c.do(ctx, request{method: http.MethodGet, path: "/api/v1/schedules"}, &out)
	return out.Schedules, err
}

// Schedule returns one schedule.
func (c *Client) Schedule(ctx context.Context, name string) (taskdef.ScheduleStatus, error) {
	var out taskdef.ScheduleStatus
	err := c.do(ctx, request{method: http.MethodGet, path: "/api/v1/schedules/" + esc(name)}, &out)
	return out, err
}

// UpdateSchedule changes the fields u gives.
func (c *Client) UpdateSchedule(ctx context.Context, name string, u taskdef.ScheduleUpdate) (taskdef.ScheduleStatus, error) {
	var out taskdef.ScheduleStatus
	err := c.do(ctx, request{method: http.MethodPost, path: "/api/v1/schedules/" + esc(name), body: u}, &out)
	return out, err
}

// DeleteSchedule removes a schedule and its run records (its graphs
// stay until they expire).
func (c *Client) DeleteSchedule(ctx context.Context, name string) (taskdef.ScheduleStatus, error) {
	var out taskdef.ScheduleStatus
	err := c.do(ctx, request{method: http.MethodDelete, path: "/api/v1/schedules/" + esc(name)}, &out)
	return out, err
}

// PauseSchedule stops a schedule making runs; ResumeSchedule starts it
// again.
func (c *Client) PauseSchedule(ctx context.Context, name string) (taskdef.ScheduleStatus, error) {
	var out taskdef.ScheduleStatus
	err := c.do(ctx, request{method: http.MethodPost, path: "/api/v1/schedules/" + esc(name) + "/pause"}, &out)
	return out, err
}

// ResumeSchedule makes a paused schedule active again.
func (c *Client) ResumeSchedule(ctx context.Context, name string) (taskdef.ScheduleStatus, error) {
	var out taskdef.ScheduleStatus
	err := c.do(ctx, request{method: http.MethodPost, path: "/api/v1/schedules/" + esc(name) + "/resume"}, &out)
	return out, err
}

// Backfill asks for one run per target in a range of dates.
func (c *Client) Backfill(ctx context.Context, name string, b taskdef.BackfillRequest) (taskdef.BackfillResponse, error) {
	var out taskdef.BackfillResponse
	err := c.do(ctx, request{method: http.MethodPost, path: "/api/v1/schedules/" + esc(name) + "/backfill", body: b}, &out)
	return out, err
}

// ScheduleRuns returns a schedule and its runs, oldest target first.
func (c *Client) ScheduleRuns(ctx context.Context, name string) (taskdef.ScheduleRuns, error) {
	var out taskdef.ScheduleRuns
	err := c.do(ctx, request{method: http.MethodGet, path: "/api/v1/schedules/" + esc(name) + "/runs"}, &out)
	return out, err
}
