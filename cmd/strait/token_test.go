package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/strait-sbc/strait/controlplane/apiauth"
)

func TestTokenCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := tokenMain([]string{"--name", "web", "--user", "alice", "--scopes", "call,user"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var tok, key string
	for _, l := range strings.Split(out.String(), "\n") {
		if v, ok := strings.CutPrefix(l, "token:   "); ok {
			tok = v
		}
		if v, ok := strings.CutPrefix(l, "api_key: "); ok {
			key = v
		}
	}
	k, err := apiauth.ParseKey(key)
	if err != nil || strings.Contains(key, tok) {
		t.Fatalf("key %q: %v", key, err)
	}
	a, _ := apiauth.New(apiauth.Config{Keys: []apiauth.Key{k}})
	if p, err := a.Check(tok); err != nil || p.User != "alice" || !p.Has("user") {
		t.Fatalf("%+v %v", p, err)
	}
	if code := tokenMain([]string{"--name", "web", "--scopes", "call"}, &out, &errb); code == 0 {
		t.Fatal("a call key without a user was made")
	}
}
