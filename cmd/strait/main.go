// Command strait is the all-in-one Strait session border controller: the
// control plane (SIP over WebSocket, UDP, TCP and TLS, the B2BUA, the HTTP
// API) with an in-process dataplane, or remote dataplane nodes with
// --dataplane. With no flags it runs the standalone mode on loopback.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/server"
	"github.com/strait-sbc/strait/controlplane/sipnet"
	"github.com/strait-sbc/strait/controlplane/webphone"
	"github.com/strait-sbc/strait/internal/cliconfig"
)

func main() {
	cfg := config.Default()
	if err := cliconfig.Load(&cfg, "strait", config.EnvPrefix, os.Args[1:], nil, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "strait:", err)
		os.Exit(2)
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "strait: invalid configuration:\n%v\n", err)
		os.Exit(2)
	}
	var level slog.Level
	level.UnmarshalText([]byte(strings.ToUpper(cfg.LogLevel)))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)
	if level <= slog.LevelDebug {
		sipnet.EnableTrace(log.With("component", "sip"))
	}
	srv, err := server.New(server.Options{Config: cfg, Log: log, Root: webphone.Handler()})
	if err != nil {
		log.Error("cannot start", "err", err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	s := <-sig
	log.Info("stopping", "signal", s.String())
	if err := srv.Close(); err != nil {
		log.Warn("stopped with an error", "err", err)
	}
}
