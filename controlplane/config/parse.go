// Turning a Config into what the control plane runs with: users,
// dataplane targets, API credentials, the dial plan, and validation.

package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/strait-sbc/strait/controlplane/apiauth"
	"github.com/strait-sbc/strait/controlplane/apps"
	"github.com/strait-sbc/strait/controlplane/dialplan"
	"github.com/strait-sbc/strait/controlplane/hep"
	"github.com/strait-sbc/strait/controlplane/messaging"
	"github.com/strait-sbc/strait/controlplane/origins"
	"github.com/strait-sbc/strait/controlplane/presence"
	"github.com/strait-sbc/strait/controlplane/sdp"
	"github.com/strait-sbc/strait/controlplane/state"
	"github.com/strait-sbc/strait/controlplane/upstream"
	"github.com/strait-sbc/strait/dataplane/node"
	"github.com/strait-sbc/strait/internal/logging"
)

// User is one standalone account.
type User struct{ Name, Password string }

// ParseUsers parses NAME:PASSWORD entries.
func ParseUsers(list []string) ([]User, error) {
	var out []User
	seen := map[string]bool{}
	for _, e := range list {
		name, pw, ok := strings.Cut(e, ":")
		if !ok || name == "" || pw == "" || strings.ContainsAny(name, "@:;<> \t") {
			return nil, fmt.Errorf("user %q: want NAME:PASSWORD (name without @ : ; < > or spaces)", e)
		}
		if seen[name] {
			return nil, fmt.Errorf("user %q given twice", name)
		}
		seen[name] = true
		out = append(out, User{Name: name, Password: pw})
	}
	return out, nil
}

// Parsed holds what Parse made of a configuration: the server is built
// from these values, so nothing is parsed twice and no error is dropped.
type Parsed struct {
	// Node is the in-process node's configuration (unused with remote
	// nodes); its ID and Logger are the caller's to set.
	Node node.Config
	// Upstreams are the --upstream entries; none in standalone mode.
	Upstreams []upstream.Spec
	// Users are the standalone accounts.
	Users []User
	// DialPlan is the dial policy.
	DialPlan *dialplan.Plan
	// SIPTrust are the --sip-trust ranges, masked.
	SIPTrust []netip.Prefix
	// Dataplane are the remote nodes, or names to find them by.
	Dataplane []DataplaneTarget
	// Apps routes numbers to web apps; nil without --app.
	Apps *apps.Router
	// Contacts is the --contacts-file address book.
	Contacts []presence.Entry
}

// Validate checks the configuration as a whole and says what is wrong with
// each bad field, all at once.
func (c *Config) Validate() error {
	_, err := c.Parse()
	return err
}

// Parse checks and parses the configuration as a whole. It says what is
// wrong with each bad field, all at once, naming its flag.
func (c *Config) Parse() (*Parsed, error) {
	p := &Parsed{}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	checkHostPort := func(name, v string) {
		if _, _, err := net.SplitHostPort(v); err != nil {
			bad("--%s %q: want HOST:PORT", name, v)
		}
	}
	checkHostPort("http", c.HTTP)
	checkHostPort("sip", c.SIP)
	if c.SIPTLS != "" {
		checkHostPort("sip-tls", c.SIPTLS)
		if c.TLSCert == "" {
			bad("--sip-tls needs --tls-cert and --tls-key")
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("--tls-cert and --tls-key go together")
	}
	for _, f := range []struct{ name, path string }{{"tls-cert", c.TLSCert}, {"tls-key", c.TLSKey},
		{"dataplane-cert", c.DataplaneCert}, {"dataplane-key", c.DataplaneKey}, {"dataplane-ca", c.DataplaneCA},
		{"upstream-ca", c.UpstreamCA}, {"upstream-cert", c.UpstreamCert}, {"upstream-key", c.UpstreamKey}} {
		if f.path != "" {
			if _, err := os.Stat(f.path); err != nil {
				bad("--%s: %v", f.name, err)
			}
		}
	}
	for _, u := range c.Upstream {
		sp, err := upstream.ParseSpec(u)
		if err != nil {
			bad("--upstream: %v", err)
			continue
		}
		p.Upstreams = append(p.Upstreams, sp)
	}
	if (c.UpstreamCert == "") != (c.UpstreamKey == "") {
		bad("--upstream-cert and --upstream-key go together")
	}
	for _, r := range c.SIPTrust {
		pf, err := netip.ParsePrefix(r)
		if err != nil {
			bad("--sip-trust %q: want an address range such as 10.0.0.0/24", r)
			continue
		}
		p.SIPTrust = append(p.SIPTrust, pf.Masked())
	}
	if c.DNSServer != "" {
		checkHostPort("dns-server", c.DNSServer)
	}
	nc, err := c.Settings.Config()
	if err != nil {
		errs = append(errs, err)
	}
	p.Node = nc
	switch c.PlainPorts {
	case "per-leg":
	case "shared":
		if len(c.Dataplane) == 0 && c.PlainSharedPorts.Pairs() == 0 {
			bad("--plain-ports shared needs --plain-shared-ports for the in-process dataplane")
		}
	default:
		bad("--plain-ports %q: want per-leg or shared", c.PlainPorts)
	}
	for _, d := range c.Dataplane {
		a, err := ParseDataplane(d)
		if err != nil {
			bad("--dataplane: %v", err)
			continue
		}
		p.Dataplane = append(p.Dataplane, a)
	}
	if (c.DataplaneCert == "") != (c.DataplaneKey == "") {
		bad("--dataplane-cert and --dataplane-key go together")
	}
	users, err := ParseUsers(c.Users)
	if err != nil {
		bad("--user: %v", err)
	}
	p.Users = users
	if len(c.Upstream) == 0 && len(users) == 0 && (!loopback(c.HTTP) || !loopback(c.SIP)) {
		bad("standalone mode on a non-loopback address needs at least one --user NAME:PASSWORD (without users anyone may register)")
	}
	if !c.apiAuthenticated() && !loopback(c.HTTP) {
		bad("--http %s is not a loopback address: the HTTP API (/v1, /metrics) needs --api-token, --api-key or --jwt-secret-file there, or anyone who reaches it may place calls", c.HTTP)
	}
	if p.DialPlan, err = c.DialPlan(); err != nil {
		bad("%v", err)
	}
	if c.AuthFailuresPerSource < 1 || c.AuthFailuresPerUser < 1 || c.AuthBlockMax < time.Second {
		bad("--auth-failures-per-source %d, --auth-failures-per-user %d, --auth-block-max %s: want at least 1, 1 and 1s",
			c.AuthFailuresPerSource, c.AuthFailuresPerUser, c.AuthBlockMax)
	}
	if _, err := c.APIAuth(); err != nil {
		bad("%v", err)
	}
	if c.TokenMaxTTL < time.Minute {
		bad("--token-max-ttl %v: want at least 1m", c.TokenMaxTTL)
	}
	var loaded []*apps.App
	for _, s := range c.Apps {
		sp, err := apps.ParseSpec(s)
		if err == nil {
			var a *apps.App
			if a, err = apps.Load(sp); err == nil {
				loaded = append(loaded, a)
			}
		}
		if err != nil {
			bad("--app: %v", err)
		}
	}
	if c.ContactsFile != "" {
		if p.Contacts, err = presence.LoadContacts(c.ContactsFile); err != nil {
			bad("--contacts-file: %v", err)
		}
	}
	if c.MaxMessagesPerMinute < 0 {
		bad("--max-messages-per-minute %d: want 0 (no limit) or more", c.MaxMessagesPerMinute)
	}
	if c.OfflineMessages < 0 {
		bad("--offline-messages %d: want 0 (none kept) or more", c.OfflineMessages)
	}
	if c.OfflineMessagesPerSender < 1 || c.OfflineMessagesPerSender > messaging.DefaultMaxTotal {
		bad("--offline-messages-per-sender %d: want 1 to %d (the messages kept in all)", c.OfflineMessagesPerSender, messaging.DefaultMaxTotal)
	}
	if c.OfflineMessageAge < time.Minute {
		bad("--offline-message-age %v: want at least 1m", c.OfflineMessageAge)
	}
	if c.AppAnswerTimeout < time.Second {
		bad("--app-answer-timeout %v: want at least 1s", c.AppAnswerTimeout)
	} else if p.Apps, err = apps.New(apps.Config{Apps: loaded, AllowPrivate: c.AppAllowPrivate, AnswerTimeout: c.AppAnswerTimeout}); err != nil {
		bad("--app: %v", err)
	}
	for _, o := range c.CORSOrigins {
		if err := origins.Check(o); err != nil {
			bad("--cors-origin: %v", err)
		}
	}
	if c.SIPRate < 0 || c.HTTPRate < 0 || c.SIPBurst < 1 || c.HTTPBurst < 1 || c.MaxSIPTransactions < 0 ||
		c.MaxConnections < 0 || c.MaxConnectionsPerSource < 0 || c.WSRegisterTimeout < 0 {
		bad("flood bounds: rates, caps and --ws-register-timeout must not be negative, bursts at least 1")
	}
	if len(c.DigestAlgorithms) == 0 {
		bad("--digest-algorithms: want MD5, SHA-256 or both")
	}
	for _, a := range c.DigestAlgorithms {
		if u := strings.ToUpper(a); u != "MD5" && u != "SHA-256" {
			bad("--digest-algorithms %q: want MD5 or SHA-256", a)
		}
	}
	if c.Realm == "" || strings.ContainsAny(c.Realm, "\"\\\r\n") {
		bad("--realm %q: want a non-empty name without quotes", c.Realm)
	}
	if len(c.Codecs) == 0 {
		bad("--codecs is empty: the trunk would get no codec")
	} else if err := sdp.CheckCodecNames(c.Codecs); err != nil {
		bad("--codecs: %v", err)
	}
	if _, err := logging.ParseLevel(c.LogLevel); err != nil {
		bad("--log-level %v", err)
	}
	if err := logging.CheckFormat(c.LogFormat); err != nil {
		bad("--log-format %v", err)
	}
	if c.HEP != "" {
		if _, err := hep.ParseURL(c.HEP); err != nil {
			bad("--hep %v", err)
		}
	}
	if c.HEPCaptureID > math.MaxUint32 {
		bad("--hep-capture-id %d: want at most %d", c.HEPCaptureID, uint32(math.MaxUint32))
	}
	if c.RegisterExpiry < time.Minute {
		bad("--register-expiry %v: want at least 1m", c.RegisterExpiry)
	}
	if c.CDRInterim < time.Second {
		bad("--cdr-interim %v: want at least 1s", c.CDRInterim)
	}
	if c.RingTimeout < time.Second {
		bad("--ring-timeout %v: want at least 1s", c.RingTimeout)
	}
	if c.MaxForks < 1 || c.MaxForks > 100 {
		bad("--max-forks %d: want 1 to 100", c.MaxForks)
	}
	if c.ShutdownTimeout < 100*time.Millisecond {
		bad("--shutdown-timeout %v: want at least 100ms", c.ShutdownTimeout)
	}
	if err := state.ValidSpec(c.State); err != nil {
		bad("--state %v", err)
	}
	if c.InstanceID != "" {
		if err := CheckInstanceID(c.InstanceID); err != nil {
			bad("--instance-id: %v", err)
		}
	}
	if (c.State == "" || c.State == "embedded") && c.DataDir == "" {
		bad("--data-dir is empty: the embedded state store needs a directory (or --state memory)")
	}
	if c.OptionsInterval < 0 {
		bad("--options-interval %v is negative", c.OptionsInterval)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// DataplaneTarget is one --dataplane entry.
type DataplaneTarget struct {
	// Addr is HOST:PORT (grpc://) or NAME:PORT (dns://).
	Addr string
	// Discover: every address of the name is a node, watched.
	Discover bool
}

// ParseDataplane parses grpc://HOST:PORT and dns://NAME:PORT.
func ParseDataplane(s string) (DataplaneTarget, error) {
	const want = "want grpc://HOST:PORT or dns://NAME:PORT"
	var t DataplaneTarget
	rest, ok := strings.CutPrefix(s, "grpc://")
	if !ok {
		if rest, ok = strings.CutPrefix(s, "dns://"); !ok {
			return t, fmt.Errorf("%q: %s", s, want)
		}
		t.Discover = true
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil || host == "" {
		return t, fmt.Errorf("%q: %s", s, want)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return t, fmt.Errorf("%q: port %q: %s", s, port, want)
	}
	t.Addr = rest
	return t, nil
}

// loopback reports whether a listen address only accepts local peers.
func loopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// apiAuthenticated reports whether the HTTP API demands credentials. It is
// the one place that decides whether the API may listen off loopback: a
// new kind of API credential is added here.
func (c *Config) apiAuthenticated() bool {
	return c.APIToken != "" || len(c.APIKeys) > 0 || c.JWTSecretFile != ""
}

// APIAuth returns the HTTP API's authenticator: the operator's token, the
// API keys and the signed tokens' secret.
func (c *Config) APIAuth() (*apiauth.Authenticator, error) {
	ac := apiauth.Config{Token: c.APIToken, MaxTTL: c.TokenMaxTTL}
	for _, s := range c.APIKeys {
		k, err := apiauth.ParseKey(s)
		if err != nil {
			return nil, fmt.Errorf("--api-key: %w", err)
		}
		ac.Keys = append(ac.Keys, k)
	}
	if c.JWTSecretFile != "" {
		secret, err := apiauth.LoadSecret(c.JWTSecretFile)
		if err != nil {
			return nil, fmt.Errorf("--jwt-secret-file: %w", err)
		}
		ac.Secret = secret
	}
	return apiauth.New(ac)
}

// DialPlan returns the dial policy the configuration describes.
func (c *Config) DialPlan() (*dialplan.Plan, error) {
	return dialplan.New(dialplan.Config{Allow: c.AllowDial, Deny: c.DenyDial,
		MaxCalls: c.MaxCallsPerUser, MaxPerMinute: c.MaxCallRatePerUser})
}

// JournalPath is where the CDR journal lives: --cdr-journal, else next to
// --cdr-file, else nowhere (records are in memory only anyway).
func (c *Config) JournalPath() string {
	if c.CDRJournal != "" {
		return c.CDRJournal
	}
	if c.CDRFile != "" {
		return c.CDRFile + ".journal"
	}
	return ""
}

// Standalone reports whether Strait runs without an upstream.
func (c *Config) Standalone() bool { return len(c.Upstream) == 0 }

// validInstanceID is what an instance id may hold: it is part of state
// store keys and dataplane session labels.
var validInstanceID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// CheckInstanceID checks an --instance-id value.
func CheckInstanceID(id string) error {
	if !validInstanceID.MatchString(id) {
		return fmt.Errorf("instance id %q: want 1 to 64 letters, digits, '.', '_' or '-'", id)
	}
	return nil
}
