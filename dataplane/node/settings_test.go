package node

import (
	"strings"
	"testing"
	"time"
)

// Every bad setting is reported, each by its flag and YAML key; good
// ones reach the Config.
func TestSettings(t *testing.T) {
	s := DefaultSettings()
	c, err := s.Config()
	if err != nil {
		t.Fatal(err)
	}
	if c.BatchSize != DefaultBatch || c.Socket.TOS != DefaultDSCP<<2 || c.Socket.RecvBuffer != DefaultSocketBuffer ||
		len(c.MediaAddrs) != 1 || c.MediaTimeout != DefaultMediaTimeout {
		t.Fatalf("defaults: %+v", c)
	}
	s.MediaIP = []string{"::", "x"}
	s.PublicIP = []string{"0.0.0.0"}
	s.Batch, s.DSCP, s.Workers, s.SocketBuffer = 0, 99, -2, -1
	s.IO, s.Coalesce, s.MediaTimeout = "pigeon", time.Second, 0
	_, err = s.Config()
	if err == nil {
		t.Fatal("bad settings accepted")
	}
	for _, want := range []string{`--media-ip (media_ip): "x"`, `--public-ip (public_ip): "0.0.0.0"`, "--batch (batch)",
		"--dscp (dscp)", "--workers (workers)", "--socket-buffer (socket_buffer)", "--io (io)", "--coalesce (coalesce)",
		"--media-timeout (media_timeout)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q not reported in:\n%v", want, err)
		}
	}
}
