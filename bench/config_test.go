package bench

import (
	"errors"
	"slices"
	"testing"
)

// --io both on a host that refuses io_uring measures mmsg and says why;
// --io uring there is left to fail when its node starts.
func TestIOModesWhereUringIsRefused(t *testing.T) {
	saved := uringUnavailable
	t.Cleanup(func() { uringUnavailable = saved })
	refusal := errors.New("io_uring_setup: operation not permitted")
	for _, tc := range []struct {
		io      string
		refused error
		want    []string
		why     bool
	}{
		{"both", nil, []string{"uring", "mmsg"}, false},
		{"both", refusal, []string{"mmsg"}, true},
		{"uring", refusal, []string{"uring"}, false},
		{"auto", refusal, []string{"auto"}, false},
		{"mmsg", refusal, []string{"mmsg"}, false},
	} {
		uringUnavailable = func() error { return tc.refused }
		c := Config{IO: tc.io}
		got, why := c.startableIOModes()
		if !slices.Equal(got, tc.want) || (why != nil) != tc.why {
			t.Errorf("--io %s, refused %v: %v, %v", tc.io, tc.refused, got, why)
		}
	}
}
