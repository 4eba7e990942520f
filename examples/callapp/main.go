// Command callapp is an example web app that answers the calls Strait
// routes to it: run it, point an --app at it, and call the number.
//
//	head -c 32 /dev/urandom | base64 > app.secret
//	go run ./examples/callapp --listen 127.0.0.1:8090 --secret-file app.secret --mode echo
//	strait --app 'demo:_8XXX:app.secret:http://127.0.0.1:8090/calls' --app-allow-private
//
// See README.md.
package main

import (
	"context"
	"flag"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/strait-sbc/strait/examples/callapp/app"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8090", "address to serve the webhook on")
	path := flag.String("path", "/calls", "the webhook's path")
	secretFile := flag.String("secret-file", "", "file with the webhook secret given to strait --app (required)")
	mode := flag.String("mode", "echo", "echo (send the caller's audio back) or tone (play 440 Hz)")
	loopback := flag.Bool("loopback-only", false, "offer only loopback ICE candidates (Strait on this host)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	secret, err := os.ReadFile(*secretFile)
	if err != nil || len(strings.TrimSpace(string(secret))) < 16 {
		log.Error("--secret-file: want a file with at least 16 bytes of secret", "err", err)
		os.Exit(2)
	}
	if *mode != string(app.Echo) && *mode != string(app.Tone) {
		log.Error("--mode: want echo or tone")
		os.Exit(2)
	}
	h := app.New(app.Options{Secret: []byte(strings.TrimSpace(string(secret))), Mode: app.Mode(*mode), LoopbackOnly: *loopback, Log: log})
	mux := http.NewServeMux()
	mux.Handle(*path, h)
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		h.Close()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("answering calls", "url", "http://"+*listen+*path, "mode", *mode)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Error("serve", "err", err)
		os.Exit(1)
	}
}
