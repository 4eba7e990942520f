// Command webapp is an example web app that answers phone calls in a
// browser page: Strait routes a number to it (strait --app), its backend
// takes Strait's signed webhook and keeps the call's offer, and the page
// (open it in a browser) rings, shows the caller, and answers with its own
// WebRTC connection through Strait's HTTP API, or declines.
//
//	head -c 32 /dev/urandom | base64 > app.secret
//	head -c 48 /dev/urandom | base64 > jwt.secret
//	strait --api-token operator --jwt-secret-file jwt.secret --cors-origin http://127.0.0.1:8090 \
//	  --app 'demo:_8XXX:app.secret:http://127.0.0.1:8090/calls' --app-allow-private
//	echo operator > admin.token
//	go run ./examples/webapp --secret-file app.secret --token-file admin.token --mint
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

	"github.com/strait-sbc/strait/examples/webapp/server"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8090", "address to serve the page and the webhook on (it hands out tokens: keep it private, see README.md)")
	appName := flag.String("app", "demo", "the app's NAME in strait --app NAME:PATTERN:SECRET_FILE:URL")
	secretFile := flag.String("secret-file", "", "file with the webhook secret given to strait --app (required)")
	strait := flag.String("strait", "http://127.0.0.1:8080", "Strait's URL as the page's browser reaches it")
	api := flag.String("api", "", "Strait's URL as this backend reaches it (default --strait)")
	tokenFile := flag.String("token-file", "", "file with an API key of scope receive:APP for the page, or with --mint an admin token (required)")
	mint := flag.Bool("mint", false, "mint a short-lived token per page with the admin token (strait needs --jwt-secret-file)")
	ttl := flag.Duration("token-ttl", time.Hour, "a minted token's lifetime")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	secret, err := os.ReadFile(*secretFile)
	if err != nil {
		log.Error("--secret-file", "err", err)
		os.Exit(2)
	}
	token, err := os.ReadFile(*tokenFile)
	if err != nil {
		log.Error("--token-file", "err", err)
		os.Exit(2)
	}
	s, err := server.New(server.Options{App: *appName, Secret: []byte(strings.TrimSpace(string(secret))),
		Strait: *strait, API: *api, Token: strings.TrimSpace(string(token)), Mint: *mint, TokenTTL: *ttl, Log: log})
	if err != nil {
		log.Error("configuration", "err", err)
		os.Exit(2)
	}
	srv := &http.Server{Addr: *listen, Handler: s, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("open the page to answer calls", "page", "http://"+*listen+"/", "webhook", "http://"+*listen+"/calls", "app", *appName)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Error("serve", "err", err)
		os.Exit(1)
	}
}
