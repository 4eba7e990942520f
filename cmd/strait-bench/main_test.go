package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: strait-bench"},
		{[]string{"--help"}, 0, "usage: strait-bench"},
		{[]string{"warp"}, 2, `unknown mode "warp"`},
		{[]string{"cadence", "--srtp", "rot13"}, 2, "--srtp"},
		{[]string{"cadence", "--peer", "asterisk"}, 2, "--peer"},
		{[]string{"cadence", "--codec", "g729"}, 2, "--codec"},
		{[]string{"cadence", "extra"}, 2, "unexpected arguments"},
		{[]string{"flood", "--node", "http://x", "--node-pid", "1"}, 2, "grpc://HOST:PORT"},
	} {
		var out, errw bytes.Buffer
		if code := run(tc.args, &out, &errw); code != tc.code || !strings.Contains(errw.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, errw.String(), tc.code, tc.want)
		}
	}
}
