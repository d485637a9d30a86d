package server

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/af-project/af/internal/notify"
	"github.com/af-project/af/internal/taskdef"
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
		mc = notify.SMTPConfig{Host: host, Port: p, Username: c.Username, From: c.From}
		if c.PasswordEnv != "" {
			mc.Password = os.Getenv(c.PasswordEnv)
		}
	}
	return notify.New(mc, s.log.With("component", "notify"))
}

// tickLoop expires leases and deadlines on the queue. A graph that a tick
// ends (deadline passed, retries exhausted) was ended by no worker's
// report, so no worker tells its owner: the server does.
func (s *Server) tickLoop(ctx context.Context) {
	t := time.NewTicker(s.tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rep, err := s.q.Tick(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("queue tick", "err", err)
			}
			continue
		}
		for _, id := range rep.ResolvedGraphs {
			s.notifyOwner(ctx, id, "the queue")
		}
	}
}

// notifyOwner emails the owner of a graph the server itself ended.
func (s *Server) notifyOwner(ctx context.Context, graphID, by string) {
	if s.mailer == nil {
		return
	}
	s.notifyWG.Add(1)
	go func() {
		defer s.notifyWG.Done()
		nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		gs, err := s.q.Graph(nctx, graphID)
		if err != nil {
			s.log.Warn("graph status for the owner's email", "graph", graphID, "err", err)
			return
		}
		msg := notify.Compose(notify.FromStatus(gs, s.cfg.MonitorURL))
		if msg.To == "" {
			return
		}
		if err := s.mailer.Send(nctx, msg); err != nil {
			s.log.Warn("email the owner", "graph", graphID, "err", err)
			return
		}
		s.log.Info("owner notified", "graph", graphID, "state", gs.State, "ended_by", by)
	}()
}

// graphRunning reports whether the graph has unresolved tasks, so cancel
// knows whether it is the one ending it.
func (s *Server) graphRunning(ctx context.Context, graphID string) bool {
	gs, err := s.q.Graph(ctx, graphID)
	return err == nil && gs.State == taskdef.GraphRunning
}
