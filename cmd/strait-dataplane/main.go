// Command strait-dataplane runs one Strait dataplane node: the media relay
// (ICE-lite, DTLS-SRTP <-> RTP) that control planes program over gRPC.
//
// Configuration comes from a YAML file (--config), environment variables
// (STRAIT_DATAPLANE_<FLAG>) and flags, in increasing precedence; run with
// -help for the list. SIGTERM (or SIGINT) drains: the node refuses new
// sessions and exits once the existing ones are deleted or --drain-timeout
// passes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/strait-sbc/strait/dataplane/batchconn"
	"github.com/strait-sbc/strait/dataplane/node"
	"github.com/strait-sbc/strait/dataplane/portalloc"
	"github.com/strait-sbc/strait/internal/cliconfig"
	"github.com/strait-sbc/strait/internal/tlsconfig"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// config is the node's whole configuration. Defaults are in defaults().
type config struct {
	ID               string          `yaml:"id" flag:"id" usage:"node name reported to control planes (default: host name)"`
	MediaIP          []string        `yaml:"media_ip" flag:"media-ip" usage:"address to bind media on; repeat for IPv4 and IPv6"`
	PublicIP         []string        `yaml:"public_ip" flag:"public-ip" usage:"address to advertise for each --media-ip (1:1 NAT), in the same order"`
	WebRTCPorts      portalloc.Range `yaml:"webrtc_ports" flag:"webrtc-ports" usage:"shared UDP ports for WebRTC legs"`
	RTPPorts         portalloc.Range `yaml:"rtp_ports" flag:"rtp-ports" usage:"UDP port pairs for plain RTP legs"`
	PlainSharedPorts portalloc.Range `yaml:"plain_shared_ports" flag:"plain-shared-ports" usage:"shared UDP port pairs for plain legs in shared mode (optional)"`
	GRPC             string          `yaml:"grpc" flag:"grpc" usage:"gRPC listen address for control planes"`
	GRPCCert         string          `yaml:"grpc_cert" flag:"grpc-cert" usage:"gRPC server certificate (PEM)"`
	GRPCKey          string          `yaml:"grpc_key" flag:"grpc-key" usage:"gRPC server key (PEM)"`
	GRPCClientCA     string          `yaml:"grpc_client_ca" flag:"grpc-client-ca" usage:"CA that control planes' client certificates must chain to (mutual TLS)"`
	GRPCInsecure     bool            `yaml:"grpc_insecure" flag:"grpc-insecure" usage:"allow a non-loopback gRPC address without mutual TLS (anyone who reaches it can program the relay)"`
	Metrics          string          `yaml:"metrics" flag:"metrics" usage:"HTTP address for /metrics, /healthz, /readyz and /debug/pprof (empty: off)"`
	Workers          int             `yaml:"workers" flag:"workers" usage:"packet workers (0: one per CPU)"`
	Batch            int             `yaml:"batch" flag:"batch" usage:"datagrams per recvmmsg/sendmmsg"`
	IO               string          `yaml:"io" flag:"io" usage:"packet I/O: uring (io_uring), mmsg (recvmmsg/sendmmsg with epoll) or auto (uring where the kernel allows it)"`
	Coalesce         time.Duration   `yaml:"coalesce" flag:"coalesce" usage:"with io_uring, the longest a datagram waits for others to join its batch (0: none)"`
	MaxSessions      int             `yaml:"max_sessions" flag:"max-sessions" usage:"refuse sessions beyond this many (0: only ports limit)"`
	MediaTimeout     time.Duration   `yaml:"media_timeout" flag:"media-timeout" usage:"default silence before a MEDIA_TIMEOUT event"`
	DrainTimeout     time.Duration   `yaml:"drain_timeout" flag:"drain-timeout" usage:"on SIGTERM, how long existing sessions may run before the node exits"`
	DTLSLinger       time.Duration   `yaml:"dtls_linger" flag:"dtls-linger" usage:"how long a completed DTLS handshake's state is kept for the peer's retransmissions"`
	SocketBuffer     int             `yaml:"socket_buffer" flag:"socket-buffer" usage:"SO_RCVBUF/SO_SNDBUF bytes per media socket (capped by net.core.rmem_max/wmem_max)"`
	DSCP             int             `yaml:"dscp" flag:"dscp" usage:"DSCP of media packets (46 = EF; 0 leaves it unset)"`
	LogLevel         string          `yaml:"log_level" flag:"log-level" usage:"debug, info, warn or error"`
	GenPKI           string          `yaml:"gen_pki" flag:"gen-pki" usage:"write a CA plus server and client certificates for mutual TLS into DIR and exit"`
}

func defaults() config {
	return config{
		MediaIP:      []string{"127.0.0.1"},
		WebRTCPorts:  node.DefaultWebRTCPorts,
		RTPPorts:     node.DefaultRTPPorts,
		GRPC:         "127.0.0.1:9090",
		Metrics:      "127.0.0.1:9091",
		Batch:        64,
		IO:           string(batchconn.ModeAuto),
		MediaTimeout: 60 * time.Second,
		DrainTimeout: 15 * time.Minute,
		DTLSLinger:   30 * time.Second,
		SocketBuffer: 4 << 20,
		DSCP:         46,
		LogLevel:     "info",
	}
}

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "strait-dataplane:", err)
		os.Exit(1)
	}
}

// run starts the node and blocks until ctx ends or a signal drains it.
func run(ctx context.Context, args []string, env func(string) string, stderr *os.File) error {
	cfg := defaults()
	if err := cliconfig.Load(&cfg, "strait-dataplane", "STRAIT_DATAPLANE", args, env, stderr); err != nil {
		return err
	}
	log, err := newLogger(cfg.LogLevel, stderr)
	if err != nil {
		return err
	}
	if cfg.GenPKI != "" {
		p, err := tlsconfig.GeneratePKI(cfg.GenPKI, append([]string{"localhost", "127.0.0.1", "::1"}, cfg.MediaIP...))
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %s %s %s %s %s\n", p.CA, p.ServerCert, p.ServerKey, p.ClientCert, p.ClientKey)
		return nil
	}
	ncfg, err := cfg.nodeConfig(log)
	if err != nil {
		return err
	}
	creds, cert, err := cfg.grpcCredentials()
	if err != nil {
		return err
	}
	n, err := node.New(ncfg)
	if err != nil {
		return err
	}
	defer n.Close()

	lis, err := net.Listen("tcp", cfg.GRPC)
	if err != nil {
		return fmt.Errorf("gRPC listener: %w", err)
	}
	var opts []grpc.ServerOption
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	srv := grpc.NewServer(opts...)
	pb.RegisterDataplaneServer(srv, pb.NewServer(n))
	go srv.Serve(lis)
	defer srv.Stop()

	if cfg.Metrics != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(n.Collector(), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte("ok\n"))
		})
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { ready(w, n) })
		ml, err := net.Listen("tcp", cfg.Metrics)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go hs.Serve(ml)
		defer hs.Close()
		log.Info("metrics", "addr", ml.Addr().String())
	}
	info, _ := n.NodeInfo(ctx)
	log.Info("dataplane node ready", "id", info.Id, "grpc", lis.Addr().String(), "mtls", creds != nil,
		"media", strings.Join(info.MediaAddresses, ","), "webrtc_ports", cfg.WebRTCPorts.String(),
		"rtp_ports", cfg.RTPPorts.String(), "workers", info.Workers, "io", n.Engine().IOStats().Mode, "fingerprint", n.Fingerprint())

	// SIGHUP rereads the gRPC server certificate (new connections get it;
	// control planes already connected and every session carry on);
	// SIGTERM and SIGINT drain.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sig)
	for draining := false; !draining; {
		select {
		case <-ctx.Done():
			return nil
		case s := <-sig:
			if s == syscall.SIGHUP {
				reloadCert(cert, log)
				continue
			}
			draining = true
			log.Info("draining", "signal", s.String(), "sessions", n.Engine().Len(), "deadline", cfg.DrainTimeout)
		}
	}
	n.Drain()
	deadline := time.NewTimer(cfg.DrainTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for n.Engine().Len() > 0 {
		select {
		case <-deadline.C:
			log.Warn("drain deadline passed; ending sessions", "sessions", n.Engine().Len())
			return nil
		case s := <-sig:
			if s == syscall.SIGHUP {
				reloadCert(cert, log)
				continue
			}
			log.Warn("second signal; ending sessions now", "signal", s.String(), "sessions", n.Engine().Len())
			return nil
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
	log.Info("drained")
	return nil
}

// ready answers a readiness probe: 200 while the node takes new sessions,
// 503 once it drains (Kubernetes then takes it out of the Service that
// control planes discover nodes by; the sessions it holds run on).
func ready(w http.ResponseWriter, n *node.Node) {
	w.Header().Set("Content-Type", "text/plain")
	if n.Draining() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "draining: %d sessions left\n", n.Engine().Len())
		return
	}
	w.Write([]byte("ready\n"))
}

// reloadCert rereads the gRPC server certificate, if there is one.
func reloadCert(cert *tlsconfig.Certificate, log *slog.Logger) {
	if cert == nil {
		log.Info("SIGHUP: no certificate to reload")
		return
	}
	if err := cert.Reload(); err != nil {
		log.Error("SIGHUP: certificate not reloaded; the one in use stays", "err", err)
		return
	}
	log.Info("SIGHUP: certificate reloaded", "subject", cert.Leaf().Subject.String(), "not_after", cert.Leaf().NotAfter)
}

func newLogger(level string, w *os.File) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// nodeConfig validates the media side of the configuration.
func (c *config) nodeConfig(log *slog.Logger) (node.Config, error) {
	nc := node.Config{
		ID:               c.ID,
		WebRTCPorts:      c.WebRTCPorts,
		RTPPorts:         c.RTPPorts,
		PlainSharedPorts: c.PlainSharedPorts,
		Workers:          c.Workers,
		BatchSize:        c.Batch,
		Coalesce:         c.Coalesce,
		MaxSessions:      c.MaxSessions,
		MediaTimeout:     c.MediaTimeout,
		DTLSLinger:       c.DTLSLinger,
		Logger:           log,
		Socket:           batchconn.Options{RecvBuffer: c.SocketBuffer, SendBuffer: c.SocketBuffer},
	}
	if c.DSCP < 0 || c.DSCP > 63 {
		return nc, fmt.Errorf("--dscp %d: want 0 to 63", c.DSCP)
	}
	nc.Socket.TOS = c.DSCP << 2
	if len(c.MediaIP) == 0 {
		return nc, errors.New("--media-ip: at least one address")
	}
	for _, s := range c.MediaIP {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nc, fmt.Errorf("--media-ip %q: %v", s, err)
		}
		nc.MediaAddrs = append(nc.MediaAddrs, a)
	}
	if len(c.PublicIP) > len(c.MediaIP) {
		return nc, errors.New("--public-ip: more public addresses than --media-ip addresses")
	}
	for _, s := range c.PublicIP {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nc, fmt.Errorf("--public-ip %q: %v", s, err)
		}
		nc.AdvertisedAddrs = append(nc.AdvertisedAddrs, a)
	}
	mode, err := batchconn.ParseMode(c.IO)
	if err != nil {
		return nc, fmt.Errorf("--io: %v", err)
	}
	nc.IO = mode
	if c.Coalesce < 0 || c.Coalesce > time.Millisecond {
		return nc, fmt.Errorf("--coalesce %v: want 0 to 1ms", c.Coalesce)
	}
	if c.Batch < 1 || c.Batch > 1024 {
		return nc, fmt.Errorf("--batch %d: want 1 to 1024", c.Batch)
	}
	return nc, nil
}

// grpcCredentials enforces that only a loopback listener may go without
// mutual TLS, unless the operator says otherwise in so many words.
// With mutual TLS it also returns the server certificate, for SIGHUP.
func (c *config) grpcCredentials() (credentials.TransportCredentials, *tlsconfig.Certificate, error) {
	if c.GRPCCert != "" || c.GRPCKey != "" || c.GRPCClientCA != "" {
		if c.GRPCCert == "" || c.GRPCKey == "" || c.GRPCClientCA == "" {
			return nil, nil, errors.New("mutual TLS needs --grpc-cert, --grpc-key and --grpc-client-ca together")
		}
		cert, err := tlsconfig.LoadCertificate(c.GRPCCert, c.GRPCKey)
		if err != nil {
			return nil, nil, err
		}
		tc, err := tlsconfig.NewServer(cert, c.GRPCClientCA)
		if err != nil {
			return nil, nil, err
		}
		return credentials.NewTLS(tc), cert, nil
	}
	host, _, err := net.SplitHostPort(c.GRPC)
	if err != nil {
		return nil, nil, fmt.Errorf("--grpc %q: %v", c.GRPC, err)
	}
	if ip, err := netip.ParseAddr(host); (err == nil && ip.IsLoopback()) || host == "localhost" || c.GRPCInsecure {
		return nil, nil, nil
	}
	return nil, nil, fmt.Errorf("--grpc %s is not a loopback address: give --grpc-cert, --grpc-key and --grpc-client-ca (mutual TLS; --gen-pki DIR makes a set), or --grpc-insecure to accept the risk", c.GRPC)
}
