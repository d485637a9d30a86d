// Package outbox delivers the owners' emails that the queue's outbox holds:
// af serve runs one Sender, which takes each pending entry (written by the
// transaction that resolved the graph), composes the message from the
// graph's status at send time (notify.FromStatus, notify.Compose), sends it
// over SMTP, and marks the entry sent in a transaction of its own. A
// failed attempt is retried with exponential backoff and jitter, for as
// long as MaxAge allows; an owner that is no address, or that the relay
// refuses for good (5xx at RCPT), is given up at once and marked failed.
//
// Delivery is at least once, and at most twice across one crash: the entry
// is marked sent only after the relay accepted the message (end of DATA), so
// a crash in the window between that reply and the mark's commit (one
// bbolt transaction, milliseconds) sends the email again after the
// restart. Every message of an entry carries the same Message-ID
// (<outbox.ID@af>), so a relay or mail store that drops duplicate
// Message-IDs delivers it once even then.
//
// Data flows queue -> outbox -> notify: the queue stores entries and
// imports neither package.
package outbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/mail"
	"sync"
	"time"

	"github.com/af-project/af/internal/notify"
	"github.com/af-project/af/internal/queue"
	"github.com/af-project/af/internal/taskdef"
)

// Clock is the time source; clocktest.Fake satisfies it.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Mailer sends one message; *notify.Mailer is one.
type Mailer interface {
	Send(ctx context.Context, msg notify.Message) error
}

// Queue is the part of the queue the sender uses; *queue.Queue is one.
type Queue interface {
	OutboxDue(ctx context.Context, now time.Time, limit int) ([]queue.OutboxEntry, time.Time, error)
	OutboxDone(ctx context.Context, id, status, note string) error
	OutboxRetry(ctx context.Context, id string, next time.Time, errMsg string) error
	OutboxSignal() <-chan struct{}
	Graph(ctx context.Context, graphID string) (taskdef.GraphStatus, error)
}

// Defaults of Options.
const (
	DefaultMinBackoff = 30 * time.Second
	DefaultMaxBackoff = time.Hour
	DefaultMaxAge     = 7 * 24 * time.Hour
	// batch bounds the entries one pass reads.
	batch = 64
)

// Options configure a Sender.
type Options struct {
	// BaseURL is where people reach af serve (its monitor_url).
	BaseURL string
	// MinBackoff is the wait after the first failed attempt; each further
	// failure doubles it up to MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// MaxAge gives up on an entry still failing this long after its graph
	// resolved: it is marked failed with the last error, and logged.
	MaxAge time.Duration
	// SendTimeout bounds one attempt (the mailer has its own too).
	SendTimeout time.Duration
	Clock       Clock
	Logger      *slog.Logger
	// Rand returns a float in [0, 1) for the jitter; tests fix it.
	Rand func() float64
	// Address maps a graph's owner to the address the email goes to
	// (nil: the owner itself).
	Address func(owner string) string
	// LinkQuery, when set, is the query the email's links carry (the
	// server's per-graph read capability, so they open without signing
	// in); "" leaves a link as it is.
	LinkQuery func(gs taskdef.GraphStatus) string
}

// Backoff is the delay before attempt number attempts+1 after attempts
// failures (attempts >= 1): min * 2^(attempts-1), capped at max, then
// spread by jitter r in [0, 1) over [d/2, d) ("equal jitter"), so entries
// that failed together do not retry together and the wait still grows.
func Backoff(attempts int, min, max time.Duration, r float64) time.Duration {
	if attempts < 1 {
		attempts = 1
	}
	d := min
	for i := 1; i < attempts && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	if r < 0 {
		r = 0
	}
	if r >= 1 {
		r = 0.999999
	}
	return d/2 + time.Duration(float64(d/2)*r)
}

// Sender delivers the outbox. Run it once per queue.
type Sender struct {
	q    Queue
	mail Mailer
	o    Options

	mu       sync.Mutex
	attempts map[string]int // results by kind, for metrics
}

// New makes a Sender.
func New(q Queue, m Mailer, o Options) *Sender {
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = DefaultMaxBackoff
		if o.MaxBackoff < o.MinBackoff {
			o.MaxBackoff = o.MinBackoff
		}
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = 2 * time.Minute
	}
	if o.Clock == nil {
		o.Clock = systemClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	return &Sender{q: q, mail: m, o: o, attempts: map[string]int{}}
}

// Attempts returns how many delivery attempts ended each way so far (sent,
// retry, failed, skipped), for the metrics.
func (s *Sender) Attempts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.attempts))
	for k, v := range s.attempts {
		out[k] = v
	}
	return out
}

func (s *Sender) count(kind string) {
	s.mu.Lock()
	s.attempts[kind]++
	s.mu.Unlock()
}

// Run delivers entries until ctx ends: a pass at start (entries a crash
// left pending), then whenever the queue writes an entry or the earliest
// retry falls due. An attempt under way when ctx ends is finished (bounded
// by SendTimeout) so the relay's answer is recorded.
func (s *Sender) Run(ctx context.Context) {
	for {
		// Take the signal before the pass, so an entry written during the
		// pass wakes the next one.
		sig := s.q.OutboxSignal()
		next, err := s.Pass(ctx)
		if ctx.Err() != nil {
			return
		}
		var timer <-chan time.Time
		switch {
		case err != nil:
			s.o.Logger.Warn("outbox: read the pending emails", "err", err)
			timer = s.o.Clock.After(s.o.MinBackoff)
		case !next.IsZero():
			timer = s.o.Clock.After(next.Sub(s.o.Clock.Now()))
		}
		select {
		case <-ctx.Done():
			return
		case <-sig:
		case <-timer:
		}
	}
}

// Pass attempts every entry due now and returns when the next pending one
// falls due (zero if none is pending). It reads again after each batch,
// so entries it rescheduled count in the answer.
func (s *Sender) Pass(ctx context.Context) (time.Time, error) {
	for {
		due, next, err := s.q.OutboxDue(ctx, s.o.Clock.Now(), batch)
		if err != nil {
			return time.Time{}, err
		}
		if len(due) == 0 {
			return next, nil
		}
		for _, e := range due {
			if ctx.Err() != nil {
				return time.Time{}, ctx.Err()
			}
			s.deliver(ctx, e)
		}
	}
}

// messageID is the entry's stable Message-ID: every attempt of one entry
// (across restarts) carries the same, so a relay can drop a duplicate.
func messageID(id string) string {
	h := sha256.Sum256([]byte(id))
	return "<outbox-" + hex.EncodeToString(h[:16]) + "@af>"
}

// deliver makes one attempt at an entry and records its outcome.
func (s *Sender) deliver(ctx context.Context, e queue.OutboxEntry) {
	log := s.o.Logger.With("graph", e.GraphID, "entry", e.ID, "attempt", e.Attempts+1)
	// The attempt and its record outlive a shutdown that starts meanwhile:
	// a message sent but not marked would go out again after the restart.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.SendTimeout)
	defer cancel()
	done := func(status, note string) {
		if err := s.q.OutboxDone(actx, e.ID, status, note); err != nil {
			log.Error("outbox: record the email's outcome", "status", status, "err", err)
			return
		}
		s.count(status)
	}
	gs, err := s.q.Graph(actx, e.GraphID)
	switch {
	case errors.Is(err, queue.ErrNotFound):
		log.Warn("outbox: graph is gone; email skipped")
		done(queue.OutboxSkipped, "graph is gone")
		return
	case err != nil:
		s.retry(actx, log, e, fmt.Errorf("graph status: %w", err))
		return
	}
	// A late run's alert (queue.AlertLate) goes the same way as a
	// resolution's email, with its own text; Created is when it was due.
	late := e.Alert == queue.AlertLate
	switch {
	case late && gs.State == taskdef.GraphCompleted:
		log.Info("outbox: late run completed before its alert went out; alert skipped")
		done(queue.OutboxSkipped, "the run completed before the alert was sent")
		return
	case !late && (gs.Resolved == nil || !gs.Resolved.Equal(e.Created)):
		// A rerun re-opened the graph after this resolution: its next
		// resolution has its own entry, with the outcome then.
		log.Info("outbox: graph was re-opened before its email went out; the next resolution sends one", "state", gs.State)
		done(queue.OutboxSkipped, "graph re-opened before the email was sent")
		return
	}
	sum := notify.FromStatus(gs, s.o.BaseURL)
	if s.o.Address != nil && sum.Owner != "" {
		sum.Owner = s.o.Address(sum.Owner)
	}
	if s.o.LinkQuery != nil {
		sum.AddQuery(s.o.LinkQuery(gs))
	}
	msg := notify.Compose(sum)
	if late {
		msg = notify.ComposeLate(sum, e.Created)
	}
	msg.MessageID = messageID(e.ID)
	if msg.To == "" {
		log.Info("outbox: graph has no owner; nothing to send", "state", gs.State)
		done(queue.OutboxSkipped, "graph has no owner")
		return
	}
	if _, err := mail.ParseAddress(msg.To); err != nil {
		// No retry can fix the address a graph was submitted with.
		log.Error("outbox: owner is not an email address; email given up", "to", msg.To, "err", err)
		done(queue.OutboxFailed, fmt.Sprintf("owner %q is not an email address: %v", msg.To, err))
		return
	}
	if err := s.mail.Send(actx, msg); err != nil {
		if errors.Is(err, notify.ErrRecipientRefused) {
			log.Error("outbox: the relay refuses the owner's address; email given up", "to", msg.To, "err", err)
			done(queue.OutboxFailed, err.Error())
			return
		}
		s.retry(actx, log, e, err)
		return
	}
	log.Info("outbox: owner emailed", "to", msg.To, "state", gs.State)
	done(queue.OutboxSent, "")
}

// retry records a failed attempt: the next one after the backoff, or none
// once the entry is older than MaxAge.
func (s *Sender) retry(ctx context.Context, log *slog.Logger, e queue.OutboxEntry, cause error) {
	now := s.o.Clock.Now()
	if now.Sub(e.Created) >= s.o.MaxAge {
		log.Error("outbox: email given up", "age", now.Sub(e.Created).Round(time.Second), "err", cause)
		if err := s.q.OutboxDone(ctx, e.ID, queue.OutboxFailed, fmt.Sprintf("given up after %d attempts: %v", e.Attempts+1, cause)); err != nil {
			log.Error("outbox: record the email's outcome", "err", err)
			return
		}
		s.count(queue.OutboxFailed)
		return
	}
	wait := Backoff(e.Attempts+1, s.o.MinBackoff, s.o.MaxBackoff, s.o.Rand())
	log.Warn("outbox: email not sent; will retry", "in", wait, "err", cause)
	if err := s.q.OutboxRetry(ctx, e.ID, now.Add(wait), cause.Error()); err != nil {
		log.Error("outbox: record the failed attempt", "err", err)
		return
	}
	s.count("retry")
}
