// The pieces New assembles: shared secrets, upstreams, the CDR journal,
// the dataplane nodes, and the host names Strait gives itself.

package server

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/strait-sbc/strait/controlplane/cdr"
	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/dpool"
	"github.com/strait-sbc/strait/controlplane/registrar"
	"github.com/strait-sbc/strait/controlplane/state"
	"github.com/strait-sbc/strait/controlplane/upstream"
	"github.com/strait-sbc/strait/dataplane/node"
	"github.com/strait-sbc/strait/internal/tlsconfig"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// secret returns the shared secret name from the state store, made (32
// random bytes) by the first control plane that asks; a random one of
// its own when the store does not answer (nonces then do not survive
// this process).
func (s *Server) secret(name string) []byte {
	k := make([]byte, 32)
	rand.Read(k)
	ctx, cancel := context.WithTimeout(context.Background(), startLoadTimeout)
	defer cancel()
	v, err := s.State.Store().PutIfAbsent(ctx, state.Secrets, name, k)
	if err != nil || len(v) < 16 {
		s.log.Warn("state store: shared secret not read; using one of this process's", "secret", name, "err", err)
		return k
	}
	s.keepSecret(name, v)
	return v
}

// keepSecret writes the secret this process uses back to a store that lost
// its records (state.Writer.OnLost), unless another process was first.
func (s *Server) keepSecret(name string, v []byte) {
	s.State.OnLost(func() {
		ctx, cancel := context.WithTimeout(context.Background(), startLoadTimeout)
		defer cancel()
		if _, err := s.State.Store().PutIfAbsent(ctx, state.Secrets, name, v); err != nil {
			s.log.Warn("state store: shared secret not written again", "secret", name, "err", err)
		}
	})
}

// nonceStore is where digest nonce counts are tracked: in the state store
// when it is shared (Redis: a nonce is used once across control planes),
// else in memory, forgetting every nonce issued before this process
// started (they get stale=true, never a replay through).
func (s *Server) nonceStore() registrar.NonceStore {
	if state.IsShared(s.store) {
		n := &registrar.StoreNonces{W: s.State}
		// A Redis that came back empty lost the counts: the nonces issued
		// before get stale=true (a fresh one), never a count used again.
		s.State.OnLost(func() { n.ForgetBefore(time.Now()) })
		return n
	}
	m := registrar.NewMemoryNonces(0, registrar.NonceLifetime+time.Minute)
	// Nonce times are milliseconds: every nonce issued before this process
	// started was another's (its counts died with it).
	m.ForgetBefore(time.Now())
	return m
}

// upstreamResolveWait bounds the first resolution of the upstreams' names
// at start; what is not resolved by then is retried in the background.
const upstreamResolveWait = 5 * time.Second

// upstreams builds the set of upstreams (nil in standalone mode) and
// resolves their names once before Strait takes calls.
func (s *Server) upstreams(specs []upstream.Spec) (*upstream.Set, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	set := upstream.NewSet(upstream.Config{Specs: specs, Resolver: upstream.NewResolver(s.cfg.DNSServer),
		Log: s.log.With("component", "upstream")})
	ctx, cancel := context.WithTimeout(context.Background(), upstreamResolveWait)
	if err := set.Resolve(ctx); err != nil {
		s.log.Warn("upstream names not all resolved at start; retrying in the background", "err", err)
	}
	cancel()
	set.Start()
	s.ups = set
	return set, nil
}

// tlsNames tells the SIP stack which TLS destinations are upstreams and
// the names they must prove.
func tlsNames(set *upstream.Set) func(netip.AddrPort) (string, bool) {
	if set == nil {
		return nil
	}
	return func(ap netip.AddrPort) (string, bool) {
		t, ok := set.Lookup(upstream.TLS, ap)
		return t.Host(), ok
	}
}

// reasonRestart is the CDR reason of a call a previous run left open.
const reasonRestart = "control plane restart"

// journalOrNil hands the engine the journal as an interface (nil when
// there is none, not a nil pointer in an interface).
func (s *Server) journalOrNil() cdr.Journal {
	if s.journal == nil {
		return nil
	}
	return s.journal
}

// dataplane creates the in-process node, or connects to the remote ones
// and returns the names to discover nodes by.
func (s *Server) dataplane(p *config.Parsed, resolver dpool.Resolver) ([]*dpool.Node, []dpool.Discovery, error) {
	cfg := s.cfg
	if len(p.Dataplane) == 0 {
		nc := p.Node
		nc.ID, nc.Logger = "local", s.log.With("component", "dataplane")
		if len(nc.Certificate.Certificate) == 0 {
			c, err := s.dtlsCertificate()
			if err != nil {
				return nil, nil, fmt.Errorf("in-process dataplane: DTLS certificate: %w", err)
			}
			nc.Certificate = c
		}
		n, err := node.New(nc)
		if err != nil {
			return nil, nil, fmt.Errorf("in-process dataplane: %w", err)
		}
		s.local = n
		// The node's traffic and drop counters on strait's own /metrics (the
		// control plane exports the session gauge itself).
		s.Metrics.Registry.MustRegister(n.TrafficCollector())
		return []*dpool.Node{{Name: "local", API: n}}, nil, nil
	}
	var creds credentials.TransportCredentials = insecure.NewCredentials()
	if cfg.DataplaneCert != "" || cfg.DataplaneCA != "" {
		if cfg.DataplaneCert != "" {
			var err error
			if s.dpCert, err = tlsconfig.LoadCertificate(cfg.DataplaneCert, cfg.DataplaneKey); err != nil {
				return nil, nil, err
			}
			s.Metrics.CertificateExpiry("dataplane_client", func() time.Time { return s.dpCert.Leaf().NotAfter })
		}
		tc, err := tlsconfig.NewClient(s.dpCert, cfg.DataplaneCA, cfg.DataplaneServerName)
		if err != nil {
			return nil, nil, err
		}
		creds = credentials.NewTLS(tc)
	}
	dial := func(addr string) (*dpool.Node, error) {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return nil, err
		}
		return &dpool.Node{Name: addr, API: pb.NewClient(conn), Close: func() { conn.Close() }}, nil
	}
	if resolver == nil {
		resolver = net.DefaultResolver
		if cfg.DNSServer != "" {
			d := net.Dialer{Timeout: 2 * time.Second}
			resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, cfg.DNSServer)
			}}
		}
	}
	var nodes []*dpool.Node
	var discover []dpool.Discovery
	for _, t := range p.Dataplane {
		if t.Discover {
			host, port, _ := net.SplitHostPort(t.Addr)
			pn, _ := strconv.ParseUint(port, 10, 16)
			discover = append(discover, dpool.Discovery{Name: host, Port: uint16(pn), Resolver: resolver,
				Dial: func(ap netip.AddrPort) (*dpool.Node, error) { return dial(ap.String()) }})
			continue
		}
		n, err := dial(t.Addr)
		if err != nil {
			for _, n := range nodes {
				n.Close()
			}
			return nil, nil, fmt.Errorf("dataplane %s: %w", t.Addr, err)
		}
		nodes = append(nodes, n)
	}
	return nodes, discover, nil
}

// sipHostOf is the host Strait names itself with toward SIP peers.
func sipHostOf(cfg config.Config) string {
	if cfg.SIPHost != "" {
		return cfg.SIPHost
	}
	if len(cfg.PublicIP) > 0 {
		return cfg.PublicIP[0]
	}
	host, _, _ := net.SplitHostPort(cfg.SIP)
	if ip, err := netip.ParseAddr(host); (err == nil && ip.IsUnspecified() || host == "") && len(cfg.MediaIP) > 0 {
		return cfg.MediaIP[0]
	}
	return host
}

// wsHostOf names Strait in Via and Contact toward browsers.
func wsHostOf(cfg config.Config) string {
	host, _, _ := net.SplitHostPort(cfg.HTTP)
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() || host == "" {
		return "strait.invalid"
	}
	return host
}
