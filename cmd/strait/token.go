package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/strait-sbc/strait/controlplane/apiauth"
)

// tokenMain is `strait token`: it makes a new API key, printing the token
// (to give to the app, shown once) and the --api-key value that admits it
// (only the token's SHA-256 goes into the configuration).
func tokenMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("strait token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "the key's name, for logs (required)")
	user := fs.String("user", "", "the identity the key calls as (required for scope call)")
	scopes := fs.String("scopes", apiauth.ScopeCall, "comma-separated scopes: admin, call, receive, receive:APP, cdr, user")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: strait token --name NAME [--user USER] [--scopes call,user]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *name == "" {
		fs.Usage()
		return 2
	}
	tok, key, err := apiauth.NewToken(*name, *user, strings.Split(*scopes, ","))
	if err != nil {
		fmt.Fprintln(stderr, "strait token:", err)
		return 2
	}
	fmt.Fprintf(stdout, "token:   %s\napi_key: %s\n", tok, key)
	fmt.Fprintln(stderr, "Give the token to the app (it is not stored anywhere); add the api_key value to api_key in the configuration file (or --api-key).")
	return 0
}
