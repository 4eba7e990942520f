// Command strait is the all-in-one Strait session border controller: the
// control plane (SIP over WebSocket, UDP, TCP and TLS, the B2BUA, the HTTP
// API) with an in-process dataplane, or remote dataplane nodes with
// --dataplane. With no flags it runs the standalone mode on loopback.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/server"
	"github.com/strait-sbc/strait/controlplane/sipnet"
	"github.com/strait-sbc/strait/controlplane/webphone"
	"github.com/strait-sbc/strait/internal/buildinfo"
	"github.com/strait-sbc/strait/internal/cliconfig"
	"github.com/strait-sbc/strait/internal/logging"
)

// synopsis is what --help prints first.
var synopsis = cliconfig.Synopsis("strait [flags]",
	"strait check-config FILE [flags]   validate a configuration (file, environment, flags) and exit",
	"strait token [flags]               make an API key (see strait token --help)")

func main() {
	if len(os.Args) > 1 && os.Args[1] == "token" {
		os.Exit(tokenMain(os.Args[2:], os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "check-config" {
		os.Exit(checkConfig(os.Args[2:], os.Getenv, os.Stdout, os.Stderr))
	}
	cfg := config.Default()
	if err := cliconfig.Load(&cfg, "strait", config.EnvPrefix, os.Args[1:], nil, os.Stderr, synopsis); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		if errors.Is(err, cliconfig.ErrVersion) {
			fmt.Println(buildinfo.Read().String("strait"))
			return
		}
		fmt.Fprintln(os.Stderr, "strait:", err)
		os.Exit(2)
	}
	parsed, err := cfg.Parse() // once: the server is built from it
	if err != nil {
		fmt.Fprintf(os.Stderr, "strait: invalid configuration:\n%v\n", err)
		os.Exit(2)
	}
	level := new(slog.LevelVar)
	l, _ := logging.ParseLevel(cfg.LogLevel) // Parse checked it
	level.Set(l)
	// Lines go to stderr from a goroutine of their own: a reader of
	// stderr that falls behind holds up no call (logging.AsyncWriter).
	logOut := logging.NewAsyncWriter(os.Stderr, cfg.LogFormat, 0)
	defer logOut.Close()
	log, _ := logging.New(logOut, cfg.LogFormat, level) // Parse checked the format
	slog.SetDefault(log)
	log.Debug("garbage collector", "gogc", tuneGC(os.Getenv))
	// sipgo's transports log through its default logger; what a peer can
	// cause at will goes to debug (counted in metrics instead).
	sip.SetDefaultLogger(sipnet.QuietLogger(log.Handler()).With("component", "sipgo"))
	// Before any listener: sipgo's tracer switch is read unguarded.
	sipnet.InstallTracer()
	trace := func() {
		if level.Level() <= slog.LevelDebug {
			sipnet.EnableTrace(log.With(logging.KeyComponent, "sip"))
		}
	}
	trace()
	srv, err := server.New(server.Options{Config: cfg, Parsed: parsed, Log: log, Level: level, Root: webphone.Handler()})
	if err != nil {
		log.Error("cannot start", "err", err)
		logOut.Close()
		os.Exit(1)
	}
	// SIGHUP rereads the configuration and applies what can change live
	// (certificates, dial plan, limits, API token, log level); SIGTERM and
	// SIGINT stop: every call is hung up within --shutdown-timeout (BYE
	// both ways, CDRs written), then the listeners close. SIGUSR2 stops
	// for an upgrade: answered calls are left to the next strait on the
	// same state store and dataplane nodes (Server.Handover).
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR2)
	stop := srv.Close
	for s := range sig {
		if s == syscall.SIGUSR2 {
			log.Info("handing over: answered calls are left to the next strait", "signal", s.String())
			stop = srv.Handover
			break
		}
		if s != syscall.SIGHUP {
			log.Info("stopping", "signal", s.String())
			break
		}
		reload(srv, log)
		trace()
	}
	if err := stop(); err != nil {
		log.Warn("stopped with an error", "err", err)
	}
}

// checkConfig is `strait check-config FILE [flags]`: it loads FILE with
// the environment and flags over it, as strait would, validates the
// whole, and says what is wrong (each bad setting by its YAML key, flag
// or environment variable) without binding or starting anything. Exit 0:
// valid; 1: invalid; 2: usage.
func checkConfig(args []string, env func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, "usage: strait check-config FILE [flags]")
		return 2
	}
	file := args[0]
	cfg := config.Default()
	err := cliconfig.Load(&cfg, "strait", config.EnvPrefix, append([]string{"--config", file}, args[1:]...), env, stderr)
	if errors.Is(err, flag.ErrHelp) || errors.Is(err, cliconfig.ErrVersion) {
		return 2
	}
	if err == nil {
		_, err = cfg.Parse()
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: invalid configuration:\n%v\n", file, err)
		return 1
	}
	mode := "standalone"
	if !cfg.Standalone() {
		mode = "trunk"
	}
	fmt.Fprintf(stdout, "%s: valid (%s mode, HTTP %s, SIP %s)\n", file, mode, cfg.HTTP, cfg.SIP)
	return 0
}

// reload reads the configuration again, from the same file, environment
// and flags, and hands it to the server. A configuration that does not
// load or validate changes nothing.
func reload(srv *server.Server, log *slog.Logger) {
	cfg := config.Default()
	if err := cliconfig.Load(&cfg, "strait", config.EnvPrefix, os.Args[1:], nil, io.Discard); err != nil {
		log.Error("SIGHUP: configuration not reloaded", "err", err)
		return
	}
	restart, err := srv.Reload(cfg)
	if err != nil {
		log.Error("SIGHUP: reload incomplete", "err", err)
	}
	if len(restart) > 0 {
		log.Warn("SIGHUP: these settings changed but take effect only after a restart", "flags", restart)
	}
}
