// Command smtpsink is the demo's mail relay: a real SMTP server on a
// loopback port that prints every message it receives, so `make demo`
// shows the email a job's owner gets.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/af-project/af/internal/smtptest"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:2525", "address to listen on")
	flag.Parse()
	srv, err := smtptest.Listen(*addr, smtptest.OnMessage(func(m smtptest.Message) {
		fmt.Printf("----- email from %s to %s\nSubject: %s\n\n%s\n-----\n", m.From, strings.Join(m.To, ", "), m.Subject, strings.TrimSpace(m.Text))
	}))
	if err != nil {
		fmt.Fprintf(os.Stderr, "smtpsink: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("smtpsink: listening on %s\n", srv.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	_ = srv.Close()
}
