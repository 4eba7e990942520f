package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/strait-sbc/strait/internal/cliconfig"
)

// checkConfig is `strait-dataplane check-config FILE [flags]`: it loads
// FILE with the environment and flags over it, as the node would, checks
// every setting the node checks before it binds (log settings, media
// addresses and ports, I/O mode, the gRPC listener's mutual TLS and its
// certificate files), and says what is wrong without binding or starting
// anything. Exit 0: valid; 1: invalid; 2: usage.
func checkConfig(args []string, env func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, "usage: strait-dataplane check-config FILE [flags]")
		return 2
	}
	file := args[0]
	cfg := defaults()
	err := cliconfig.Load(&cfg, "strait-dataplane", "STRAIT_DATAPLANE", append([]string{"--config", file}, args[1:]...), env, stderr)
	if errors.Is(err, flag.ErrHelp) || errors.Is(err, cliconfig.ErrVersion) {
		return 2
	}
	if err == nil {
		_, err = newLogger(cfg.LogLevel, cfg.LogFormat, io.Discard)
	}
	if err == nil {
		_, err = cfg.nodeConfig(slog.New(slog.DiscardHandler))
	}
	if err == nil {
		_, _, err = cfg.grpcCredentials()
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: invalid configuration:\n%v\n", file, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: valid (gRPC %s, metrics %s)\n", file, cfg.GRPC, cfg.Metrics)
	return 0
}
