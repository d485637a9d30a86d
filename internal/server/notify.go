package server

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/af-project/af/internal/notify"
	"github.com/af-project/af/internal/outbox"
)

// mailerFor builds the owners' mailer from the config's smtp section; with
// no address it logs each message instead ("logged, not lost").
func mailerFor(c SMTPConfig, s *Server) (*notify.Mailer, error) {
	var mc notify.SMTPConfig
	if c.Addr != "" {
		host, port, err := net.SplitHostPort(c.Addr)
		if err != nil {
			return nil, fmt.Errorf("smtp.addr %q: want host:port: %w", c.Addr, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("smtp.addr %q: port must be a number", c.Addr)
		}
		mc = notify.SMTPConfig{Host: host, Port: p, Username: c.Username, From: c.From, StartTLS: c.StartTLS}
		if c.PasswordEnv != "" {
			mc.Password = os.Getenv(c.PasswordEnv)
		}
	}
	return notify.New(mc, s.log.With("component", "notify"), notify.Quiet())
}

// senderFor builds the outbox sender: every graph resolution's email, sent
// from this server (workers send none).
// It also returns where the emails go, for the log (no password).
func senderFor(c SMTPConfig, s *Server) (*outbox.Sender, string, error) {
	mailer, err := mailerFor(c, s)
	if err != nil {
		return nil, "", err
	}
	var clock outbox.Clock
	if oc, ok := s.clock.(outbox.Clock); ok {
		clock = oc // a test's fake clock moves the retries too
	}
	return outbox.New(s.q, mailer, outbox.Options{
		BaseURL:    s.cfg.MonitorURL,
		MinBackoff: time.Duration(c.RetryMin),
		MaxBackoff: time.Duration(c.RetryMax),
		MaxAge:     time.Duration(c.GiveUpAfter),
		Clock:      clock,
		Logger:     s.log.With("component", "outbox"),
		Address:    s.ownerAddress,
		LinkQuery:  s.capQuery,
	}), mailer.Describe(), nil
}

// tickLoop expires leases and deadlines on the queue. A graph that a tick
// ends gets its owner's email from the outbox, like every other.
func (s *Server) tickLoop(ctx context.Context) {
	t := time.NewTicker(s.tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.q.Tick(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("queue tick", "err", err)
		}
	}
}
