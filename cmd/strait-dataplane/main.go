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
	"io"
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

	"github.com/strait-sbc/strait/controlplane/metrics"
	"github.com/strait-sbc/strait/dataplane/node"
	"github.com/strait-sbc/strait/internal/buildinfo"
	"github.com/strait-sbc/strait/internal/cliconfig"
	"github.com/strait-sbc/strait/internal/logging"
	"github.com/strait-sbc/strait/internal/tlsconfig"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// config is the node's whole configuration: the media settings the
// all-in-one strait takes too (node.Settings, under the same names), and
// what only a node that stands alone needs. Defaults are in defaults().
type config struct {
	node.Settings `yaml:",inline"`

	ID           string        `yaml:"id" group:"Node and gRPC" flag:"id" usage:"node name reported to control planes (default: host name)"`
	GRPC         string        `yaml:"grpc" flag:"grpc" usage:"gRPC listen address for control planes"`
	GRPCCert     string        `yaml:"grpc_cert" flag:"grpc-cert" usage:"gRPC server certificate (PEM)"`
	GRPCKey      string        `yaml:"grpc_key" flag:"grpc-key" usage:"gRPC server key (PEM)"`
	GRPCClientCA string        `yaml:"grpc_client_ca" flag:"grpc-client-ca" usage:"CA that control planes' client certificates must chain to (mutual TLS)"`
	GRPCInsecure bool          `yaml:"grpc_insecure" flag:"grpc-insecure" usage:"allow a non-loopback gRPC address without mutual TLS (anyone who reaches it can program the relay)"`
	Metrics      string        `yaml:"metrics" group:"Operations" flag:"metrics" usage:"HTTP address for /metrics, /healthz, /readyz and /debug/pprof (empty: off)"`
	DrainTimeout time.Duration `yaml:"drain_timeout" flag:"drain-timeout" usage:"on SIGTERM, how long existing sessions may run before the node exits"`
	LogLevel     string        `yaml:"log_level" flag:"log-level" usage:"debug, info, warn or error"`
	LogFormat    string        `yaml:"log_format" flag:"log-format" usage:"text or json"`
	GenPKI       string        `yaml:"gen_pki" flag:"gen-pki" usage:"write a CA plus server and client certificates for mutual TLS into DIR and exit"`
}

func defaults() config {
	return config{
		Settings:     node.DefaultSettings(),
		GRPC:         "127.0.0.1:9090",
		Metrics:      "127.0.0.1:9091",
		DrainTimeout: 15 * time.Minute,
		LogLevel:     "info",
		LogFormat:    "text",
	}
}

// synopsis is what --help prints first.
var synopsis = cliconfig.Synopsis("strait-dataplane [flags]",
	"strait-dataplane check-config FILE [flags]   validate a configuration (file, environment, flags) and exit")

func main() {
	if len(os.Args) > 1 && os.Args[1] == "check-config" {
		os.Exit(checkConfig(os.Args[2:], os.Getenv, os.Stdout, os.Stderr))
	}
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		if errors.Is(err, cliconfig.ErrVersion) {
			fmt.Println(buildinfo.Read().String("strait-dataplane"))
			return
		}
		fmt.Fprintln(os.Stderr, "strait-dataplane:", err)
		os.Exit(1)
	}
}

// run starts the node and blocks until ctx ends or a signal drains it.
func run(ctx context.Context, args []string, env func(string) string, stderr *os.File) error {
	cfg := defaults()
	if err := cliconfig.Load(&cfg, "strait-dataplane", "STRAIT_DATAPLANE", args, env, stderr, synopsis); err != nil {
		return err
	}
	log, err := newLogger(cfg.LogLevel, cfg.LogFormat, stderr)
	if err != nil {
		return err
	}
	if cfg.GenPKI != "" {
		// strait-dataplane: the name control planes check when they find
		// nodes by DNS (--dataplane-server-name), whatever their address.
		p, err := tlsconfig.GeneratePKI(cfg.GenPKI, append([]string{"localhost", "127.0.0.1", "::1", "strait-dataplane"}, cfg.MediaIP...))
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
		if cert != nil {
			reg.MustRegister(metrics.CertificateExpiryGauge("grpc", func() time.Time { return cert.Leaf().NotAfter }))
		}
		reg.MustRegister(n.Collector(), buildinfo.Collector("strait-dataplane"), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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

func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	l, err := logging.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level %v", err)
	}
	log, err := logging.New(w, format, l)
	if err != nil {
		return nil, fmt.Errorf("--log-format %v", err)
	}
	return log, nil
}

// nodeConfig parses the media settings (every bad one named at once).
func (c *config) nodeConfig(log *slog.Logger) (node.Config, error) {
	nc, err := c.Settings.Config()
	nc.ID, nc.Logger = c.ID, log
	return nc, err
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
