package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/strait-sbc/strait/dataplane/mediatest"
	"github.com/strait-sbc/strait/internal/tlsconfig"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--grpc", "0.0.0.0:9090"}, "not a loopback address"},
		{[]string{"--grpc-cert", "x.pem"}, "together"},
		{[]string{"--media-ip", "nonsense"}, "--media-ip"},
		{[]string{"--rtp-ports", "9-1"}, "port range"},
		{[]string{"--log-level", "chatty"}, "--log-level"},
		{[]string{"--dscp", "99"}, "--dscp"},
		{[]string{"--batch", "0"}, "--batch"},
		{[]string{"--public-ip", "1.2.3.4", "--public-ip", "5.6.7.8"}, "--public-ip (public_ip): 2 addresses for 1 --media-ip"},
		{[]string{"--media-ip", "0.0.0.0"}, "give --public-ip"},
		{[]string{"--io", "carrier-pigeon"}, "--io (io)"},
	} {
		err := run(context.Background(), tc.args, func(string) string { return "" }, devNull(t))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want it to mention %q", tc.args, err, tc.want)
		}
	}
}

func devNull(t *testing.T) *os.File {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestProcessOverMutualTLS runs strait-dataplane as its own process,
// drives a call through it over gRPC with mutual TLS, scrapes its metrics,
// and drains it with SIGTERM.
func TestProcessOverMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "strait-dataplane")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	pki := filepath.Join(dir, "pki")
	if out, err := exec.Command(bin, "--gen-pki", pki).CombinedOutput(); err != nil {
		t.Fatalf("--gen-pki: %v\n%s", err, out)
	}
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	base := 20000 + 2*rand.IntN(20000)
	var logs strings.Builder
	cmd := exec.Command(bin,
		"--grpc", grpcAddr, "--metrics", metricsAddr,
		"--grpc-cert", filepath.Join(pki, "server.pem"), "--grpc-key", filepath.Join(pki, "server-key.pem"),
		"--grpc-client-ca", filepath.Join(pki, "ca.pem"),
		"--webrtc-ports", fmt.Sprintf("%d-%d", base, base+1), "--rtp-ports", fmt.Sprintf("%d-%d", base+2, base+21),
		"--workers", "2", "--drain-timeout", "1m", "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var exitErr error
	go func() { exitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("strait-dataplane log:\n%s", logs.String())
		}
	})

	tc, err := tlsconfig.Client(filepath.Join(pki, "client.pem"), filepath.Join(pki, "client-key.pem"), filepath.Join(pki, "ca.pem"), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	node := pb.NewClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var info *pb.NodeInfoResponse
	for deadline := time.Now().Add(10 * time.Second); ; {
		if info, err = node.NodeInfo(ctx); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node never answered: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if info.Fingerprint.GetValue() == "" || info.WebrtcPorts.GetFirst() != uint32(base) || info.Workers != 2 {
		t.Fatalf("NodeInfo: %v", info)
	}

	// Nobody without a client certificate may program the relay.
	anon, _ := tlsconfig.Client("", "", filepath.Join(pki, "ca.pem"), "127.0.0.1")
	aconn, _ := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(anon)))
	defer aconn.Close()
	if _, err := pb.NewClient(aconn).NodeInfo(ctx); err == nil {
		t.Fatal("a client without a certificate was served")
	}

	events, err := node.WatchEvents(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	c := mediatest.NewCall(t, node, mediatest.CallOptions{})
	c.BrowserToPlain("grpc-b2p", 10)
	c.PlainToBrowser("grpc-p2b", 1, 10)
	seen := map[pb.EventType]bool{}
	for deadline := time.After(10 * time.Second); !(seen[pb.EventType_EVENT_TYPE_DTLS_CONNECTED] && seen[pb.EventType_EVENT_TYPE_MEDIA_STARTED]); {
		select {
		case ev := <-events:
			seen[ev.Type] = true
		case <-deadline:
			t.Fatalf("events seen over gRPC: %v", seen)
		}
	}

	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`strait_dataplane_packets_total{direction="in"}`, "strait_dataplane_sessions 1", "go_memstats_mallocs_total", "process_cpu_seconds_total"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	if code, body := get(t, "http://"+metricsAddr+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get(t, "http://"+metricsAddr+"/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Errorf("/readyz before draining: %d %q", code, body)
	}

	// SIGTERM drains: no new sessions, the existing one runs until deleted.
	cmd.Process.Signal(syscall.SIGTERM)
	for deadline := time.Now().Add(5 * time.Second); ; {
		s, err := node.CreateSession(ctx, &pb.CreateSessionRequest{Legs: []*pb.LegSpec{mediatest.PlainLeg(c.Plain, pb.PortMode_PORT_MODE_PER_LEG, false)}})
		if status.Code(err) == codes.FailedPrecondition {
			break
		}
		if err == nil { // the signal is not handled yet
			node.DeleteSession(ctx, &pb.DeleteSessionRequest{Id: s.Id})
		}
		if time.Now().After(deadline) {
			t.Fatalf("CreateSession while draining: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.BrowserToPlain("draining", 5)
	// A draining node is alive but not ready (Kubernetes stops sending it
	// work; its sessions run on).
	if code, body := get(t, "http://"+metricsAddr+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "draining: 1 sessions") {
		t.Errorf("/readyz while draining: %d %q", code, body)
	}
	if code, _ := get(t, "http://"+metricsAddr+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while draining: %d", code)
	}
	select {
	case <-exited:
		t.Fatalf("exited while a session was still up: %v", exitErr)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := node.DeleteSession(ctx, &pb.DeleteSessionRequest{Id: c.Sess.Id}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if exitErr != nil {
			t.Fatalf("exit after drain: %v", exitErr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("did not exit after the last session was deleted")
	}
	if !strings.Contains(logs.String(), "drained") {
		t.Errorf("log does not say it drained")
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
