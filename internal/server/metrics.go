package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/af-project/af/internal/outbox"
	"github.com/af-project/af/internal/queue"
	"github.com/af-project/af/internal/taskdef"
)

// metrics are the server's Prometheus series, in a registry of its own so
// several servers (tests) can live in one process.
type metrics struct {
	reg       *prometheus.Registry
	claims    prometheus.Counter
	inflight  prometheus.Gauge
	reports   *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	artifacts *prometheus.CounterVec
	claimWait *prometheus.HistogramVec
}

func newMetrics(q *queue.Queue, sender *outbox.Sender) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		claims: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "af_claims_total",
			Help: "Tasks handed to workers by claim-work.",
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "af_inflight_claims",
			Help: "claim-work requests waiting in the long-poll now (idle workers).",
		}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "af_reports_total",
			Help: "Run reports by outcome (completed, failed, exception) and result (ok, conflict, error).",
		}, []string{"outcome", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "af_http_request_duration_seconds",
			Help:    "HTTP request latency by route and status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 25},
		}, []string{"route", "code"}),
		artifacts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "af_artifact_requests_total",
			Help: "Artifact requests by operation (create, get, list) and result (ok, error).",
		}, []string{"op", "result"}),
		claimWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "af_claim_wait_seconds",
			Help:    "How long claimed tasks waited pending (scheduled to claimed), by priority.",
			Buckets: []float64{.01, .1, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600},
		}, []string{"priority"}),
	}
	// Every priority reads 0 rather than being absent until its first
	// claim.
	for _, p := range taskdef.Priorities {
		m.claimWait.WithLabelValues(string(p))
	}
	q.ObserveClaims(func(p taskdef.Priority, wait time.Duration) {
		m.claimWait.WithLabelValues(string(p)).Observe(wait.Seconds())
	})
	m.reg.MustRegister(m.claims, m.inflight, m.reports, m.latency, m.artifacts, m.claimWait,
		&taskCollector{q: q}, &ownerCollector{q: q},
		&outboxCollector{q: q, sender: sender},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *metrics) observe(route string, status int, d time.Duration) {
	m.latency.WithLabelValues(route, strconv.Itoa(status)).Observe(d.Seconds())
}

func (m *metrics) report(outcome string, err error) {
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, queue.ErrConflict):
		result = "conflict"
	default:
		result = "error"
	}
	m.reports.WithLabelValues(outcome, result).Inc()
}

func (m *metrics) artifact(op string, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.artifacts.WithLabelValues(op, result).Inc()
}

// taskCollector reads the number of tasks in each state from the queue at
// scrape time, so the gauge is never stale.
type taskCollector struct {
	q *queue.Queue
}

var tasksDesc = prometheus.NewDesc("af_tasks", "Tasks in the queue by state.", []string{"state"}, nil)

// allStates lists every state so a state with no task reads 0 instead of
// disappearing.
var allStates = []taskdef.TaskState{
	taskdef.StateUnscheduled, taskdef.StatePending, taskdef.StateRunning,
	taskdef.StateCompleted, taskdef.StateFailed, taskdef.StateException,
}

func (c *taskCollector) Describe(ch chan<- *prometheus.Desc) { ch <- tasksDesc }

func (c *taskCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.q.Counts(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(tasksDesc, err)
		return
	}
	for _, s := range allStates {
		ch <- prometheus.MustNewConstMetric(tasksDesc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}

// maxOwnerSeries bounds the owners af_owner_tasks names: the owners with
// the most unresolved tasks; the rest are summed under ownerOther. Owners
// are whatever submitters call themselves, so without a bound one token
// holder could make /metrics (and every Prometheus that scrapes it)
// arbitrarily large.
const maxOwnerSeries = 20

// ownerOther is the owner label of the owners past maxOwnerSeries.
const ownerOther = "(other)"

var ownerTasksDesc = prometheus.NewDesc("af_owner_tasks",
	"Unresolved tasks by owner and state (unscheduled, pending, running): the 20 owners with the most, the others summed as owner=\"(other)\".",
	[]string{"owner", "state"}, nil)

// ownerCollector reads the owners' task counts from the queue at scrape
// time.
type ownerCollector struct {
	q *queue.Queue
}

func (c *ownerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- ownerTasksDesc }

func (c *ownerCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	owners, err := c.q.OwnerCounts(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(ownerTasksDesc, err)
		return
	}
	emit := func(o queue.OwnerCount) {
		for _, v := range []struct {
			s taskdef.TaskState
			n int
		}{{taskdef.StateUnscheduled, o.Unscheduled}, {taskdef.StatePending, o.Pending}, {taskdef.StateRunning, o.Running}} {
			ch <- prometheus.MustNewConstMetric(ownerTasksDesc, prometheus.GaugeValue, float64(v.n), o.Owner, string(v.s))
		}
	}
	other := queue.OwnerCount{Owner: ownerOther}
	for i, o := range owners {
		if i < maxOwnerSeries && o.Owner != ownerOther {
			emit(o)
			continue
		}
		other.Unscheduled += o.Unscheduled
		other.Pending += o.Pending
		other.Running += o.Running
	}
	if other.Total() > 0 {
		emit(other)
	}
}

// outboxCollector reads the owner emails' states from the queue and the
// sender's attempts at scrape time.
type outboxCollector struct {
	q      *queue.Queue
	sender *outbox.Sender
}

var (
	outboxDesc = prometheus.NewDesc("af_outbox_emails",
		"Owner emails in the outbox by state: pending (to send or retry), sent, skipped (no owner, graph re-opened or gone), failed (given up).",
		[]string{"state"}, nil)
	outboxAttemptsDesc = prometheus.NewDesc("af_outbox_attempts_total",
		"Delivery attempts of owner emails by this process, by result (sent, retry, skipped, failed).",
		[]string{"result"}, nil)
)

func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- outboxDesc
	ch <- outboxAttemptsDesc
}

func (c *outboxCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.q.OutboxStats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(outboxDesc, err)
	} else {
		for _, v := range []struct {
			state string
			n     int
		}{{queue.OutboxPending, st.Pending}, {queue.OutboxSent, st.Sent}, {queue.OutboxSkipped, st.Skipped}, {queue.OutboxFailed, st.Failed}} {
			ch <- prometheus.MustNewConstMetric(outboxDesc, prometheus.GaugeValue, float64(v.n), v.state)
		}
	}
	if c.sender == nil {
		return
	}
	got := c.sender.Attempts()
	for _, r := range []string{queue.OutboxSent, "retry", queue.OutboxSkipped, queue.OutboxFailed} {
		ch <- prometheus.MustNewConstMetric(outboxAttemptsDesc, prometheus.CounterValue, float64(got[r]), r)
	}
}
