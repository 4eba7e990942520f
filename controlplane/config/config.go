// Package config is the control plane's one configuration struct: what the
// strait binary reads from its YAML file, STRAIT_* environment variables
// and flags (internal/cliconfig applies them in that order over the
// defaults here), and the validation that runs before anything starts.
package config

import (
	"time"

	"github.com/strait-sbc/strait/controlplane/apiauth"
	"github.com/strait-sbc/strait/controlplane/apps"
	"github.com/strait-sbc/strait/controlplane/messaging"
	"github.com/strait-sbc/strait/dataplane/node"
)

// EnvPrefix prefixes every environment variable: --http is STRAIT_HTTP.
const EnvPrefix = "STRAIT"

// Defaults. Everything listens on loopback unless told otherwise, so that
// `strait` with no flags is a safe local demo.
const (
	// DefaultHTTP serves the web page, the API and SIP over WebSocket (/ws).
	DefaultHTTP = "127.0.0.1:8080"
	// DefaultSIP is where SIP over UDP and TCP listens (RFC 3261's port).
	DefaultSIP = "127.0.0.1:5060"
	// DefaultRealm names the digest realm of the standalone registrar.
	DefaultRealm = "strait"
	// DefaultRegisterExpiry bounds a binding's lifetime when the REGISTER
	// asks for none (RFC 3261 section 10.2.1.1 suggests 3600 s; browsers
	// re-register every few minutes anyway).
	DefaultRegisterExpiry = 600 * time.Second
	// DefaultOptionsInterval is how often the upstream is pinged with
	// OPTIONS (a typical SBC keepalive: short enough to notice a dead PBX
	// within a minute, long enough to cost nothing).
	DefaultOptionsInterval = 30 * time.Second
	// DefaultMaxMessagesPerMinute is each user's message rate: a person
	// typing fast sends a few a minute; a script sending hundreds is spam.
	DefaultMaxMessagesPerMinute = 60
	// DefaultRingTimeout bounds how long an outgoing INVITE may ring
	// before Strait gives up with 408.
	DefaultRingTimeout = 120 * time.Second
	// DefaultCDRInterim is how often a call's accounting is made durable:
	// a crash costs a CDR at most this much.
	DefaultCDRInterim = 5 * time.Second
	// DefaultMaxForks bounds the registrations one call rings at once.
	DefaultMaxForks = 10
	// DefaultMaxCallsPerUser bounds one user's calls in progress: a
	// person has one or two; a stolen account used for toll fraud starts
	// dozens at once.
	DefaultMaxCallsPerUser = 10
	// DefaultMaxCallRatePerUser bounds the calls one user may start per
	// minute, for the same reason (a person dials a few a minute at most).
	DefaultMaxCallRatePerUser = 30
	// DefaultShutdownTimeout bounds a shutdown: every call gets its BYE
	// (or CANCEL) within it, in parallel, and a peer that has not answered
	// by then is not waited for (systemd's default stop timeout is 90 s;
	// 10 s keeps a restart quick).
	DefaultShutdownTimeout = 10 * time.Second
	// DefaultDataDir holds the embedded state store when Strait runs from
	// a checkout (the systemd unit passes /var/lib/strait).
	DefaultDataDir = "strait-data"
)

// Flood bounds (see the fields of the same names and deploy/README.md).
const (
	// DefaultSIPRate and DefaultSIPBurst: 100 messages a second, 200 at
	// once, per source. Kamailio's pike defaults to 30 requests per 2 s;
	// Strait's is higher so that one address can still carry a small
	// PBX's or a load test's ~30 calls a second.
	DefaultSIPRate  = 100
	DefaultSIPBurst = 200
	// DefaultMaxSIPTransactions: 10 000 server transactions, ~75 MB at
	// most (measured: ~7 KB each with sipgo's timers and buffers), which
	// UDP requests reach at ~310 a second sustained (each lives 32 s).
	DefaultMaxSIPTransactions = 10000
	// DefaultMaxConnectionsPerSource: a browser holds one WebSocket and a
	// few HTTP connections; 64 leaves room for a small office behind one
	// NAT address.
	DefaultMaxConnectionsPerSource = 64
	// DefaultHTTPRate and DefaultHTTPBurst: 20 API requests a second, 40
	// at once, per source.
	DefaultHTTPRate  = 20
	DefaultHTTPBurst = 40
	// DefaultWSRegisterTimeout: JsSIP and SIP.js register as soon as they
	// connect.
	DefaultWSRegisterTimeout = 15 * time.Second
)

// DefaultCodecs are the codecs a trunk is offered unless --codecs says
// otherwise: G.711 both laws, G.722 and DTMF events (add "opus" when the
// trunk takes it).
var DefaultCodecs = []string{"PCMU", "PCMA", "G722", "telephone-event"}

// Config is the whole control-plane configuration. Each field's flag is its
// `flag` tag, its YAML key the `yaml` tag and its environment variable
// STRAIT_ plus the flag in upper case with dashes as underscores.
type Config struct {
	// Settings are the in-process dataplane node's media settings
	// (--media-ip, --public-ip, --rtp-ports, --webrtc-ports, --workers,
	// --batch, --dscp, --socket-buffer, --plain-shared-ports...), the
	// same struct and names strait-dataplane takes; with --dataplane only
	// --media-timeout applies (to every session). See node.Settings.
	node.Settings `yaml:",inline"`

	// HTTP is the listen address of the HTTP server: the web page at /,
	// the API under /v1, SIP over WebSocket at /ws. Example: 0.0.0.0:443.
	HTTP string `yaml:"http" group:"Listeners" flag:"http" usage:"HTTP listen address (web page, /v1 API, SIP over WebSocket at /ws)"`
	// SIP is the listen address of SIP over UDP and TCP (and TLS on the
	// next port up when a certificate is configured). Example: 0.0.0.0:5060.
	SIP string `yaml:"sip" flag:"sip" usage:"SIP UDP and TCP listen address"`
	// SIPTLS is the listen address of SIP over TLS; empty disables it.
	// Needs TLSCert and TLSKey. Example: 0.0.0.0:5061.
	SIPTLS string `yaml:"sip_tls" flag:"sip-tls" usage:"SIP over TLS listen address (needs --tls-cert/--tls-key)"`
	// SIPHost is the host Strait names itself with in Via, Contact and
	// From toward SIP peers; default: the public IP, else the SIP listen
	// address.
	SIPHost string `yaml:"sip_host" flag:"sip-host" usage:"host Strait names itself with toward SIP peers (default: public IP or SIP address)"`
	// Upstream lists the PBXs or trunks:
	// sip:HOST[:PORT][;transport=udp|tcp|tls][;priority=N][;weight=N].
	// A name is resolved as RFC 3263 says (NAPTR, SRV, A/AAAA) in the
	// background; new calls try the lowest priority first, share equal
	// priorities by weight and fail over on 503, 408 and transport
	// errors. Empty runs the standalone mode (local registrar). Optional.
	Upstream []string `yaml:"upstream" group:"Upstream (trunk mode)" flag:"upstream" usage:"PBX or trunk, sip:HOST[:PORT][;transport=udp|tcp|tls][;priority=N][;weight=N] (repeatable; none: standalone mode)"`
	// UpstreamCA is a PEM bundle of the CAs an upstream's TLS certificate
	// must chain to; empty trusts the system's roots. The certificate
	// must also carry the upstream's host.
	UpstreamCA string `yaml:"upstream_ca" flag:"upstream-ca" usage:"CA bundle (PEM) an upstream's TLS certificate must chain to (default: system roots)"`
	// UpstreamCert and UpstreamKey are the client certificate Strait shows
	// an upstream over TLS (mutual TLS, as carriers and Microsoft Teams
	// direct routing require).
	UpstreamCert string `yaml:"upstream_cert" flag:"upstream-cert" usage:"client certificate (PEM) for mutual TLS toward the upstreams"`
	UpstreamKey  string `yaml:"upstream_key" flag:"upstream-key" usage:"client key (PEM) for mutual TLS toward the upstreams"`
	// SIPTrust lists address ranges (CIDR) besides the upstreams whose
	// SIP requests Strait takes in trunk mode; in standalone mode, when
	// set, the only ranges SIP devices may use. Everything else from the
	// SIP side gets 403, counted. Example: 10.0.0.0/24.
	SIPTrust []string `yaml:"sip_trust" flag:"sip-trust" usage:"address range (CIDR) trusted to send SIP besides the upstreams (repeatable)"`
	// DNSServer is the DNS server (HOST:PORT) upstream names are looked up
	// with; empty uses the system's.
	DNSServer string `yaml:"dns_server" flag:"dns-server" usage:"DNS server HOST:PORT for upstream names (default: the system's)"`
	// PlainPorts is how SIP legs get media ports: "per-leg" (a port pair
	// per call, the default: a peer behind NAT is learnt where it sends
	// from) or "shared" (the node's --plain-shared-ports for every call,
	// told apart by the peer's SDP address, which the peer must send from:
	// batching's best case, for trunks and PBXs that do symmetric RTP).
	// With io_uring the node serves per-leg ports about as cheaply
	// (bench/README.md).
	PlainPorts string `yaml:"plain_ports" flag:"plain-ports" usage:"SIP legs' media ports: per-leg (a pair per call; learns a NAT'd peer) or shared (the node's --plain-shared-ports, matched by the peer's SDP address)"`
	// Dataplane lists remote dataplane nodes: grpc://HOST:PORT is one
	// node; dns://NAME:PORT is every address NAME resolves to (A and
	// AAAA), looked up again every 5 s, so that nodes join and leave (a
	// Kubernetes headless Service over the nodes' DaemonSet). Empty runs
	// one in process.
	Dataplane []string `yaml:"dataplane" group:"Remote dataplane nodes" flag:"dataplane" usage:"remote dataplane node grpc://HOST:PORT, or dns://NAME:PORT for every address of NAME, watched (repeatable; default: in process)"`
	// DataplaneServerName is the name the nodes' certificates must carry
	// (mutual TLS); empty: the address dialled. Nodes found by DNS share
	// one certificate for a name, e.g. strait-dataplane.
	DataplaneServerName string `yaml:"dataplane_server_name" flag:"dataplane-server-name" usage:"name the dataplane nodes' TLS certificates carry (default: the address dialled)"`
	// DataplaneCert, DataplaneKey and DataplaneCA are the mTLS client
	// certificate, key and CA for remote nodes; all empty means plaintext
	// (only sensible on a private network or loopback).
	DataplaneCert string `yaml:"dataplane_cert" flag:"dataplane-cert" usage:"mTLS client certificate for remote dataplane nodes"`
	DataplaneKey  string `yaml:"dataplane_key" flag:"dataplane-key" usage:"mTLS client key for remote dataplane nodes"`
	DataplaneCA   string `yaml:"dataplane_ca" flag:"dataplane-ca" usage:"CA that signed the remote dataplane nodes' certificates"`
	// Users are NAME:PASSWORD pairs of the standalone registrar. With none,
	// standalone mode accepts any user name without a password, and only
	// on loopback listeners.
	Users []string `yaml:"user" group:"Users and authentication" flag:"user" usage:"standalone user NAME:PASSWORD (repeatable)"`
	// Realm is the digest realm of the standalone registrar.
	Realm string `yaml:"realm" flag:"realm" usage:"digest realm of the standalone registrar"`
	// DigestAlgorithms are the digest algorithms the standalone registrar
	// offers, most preferred first: MD5 and SHA-256 (RFC 8760). JsSIP and
	// SIP.js answer only the first challenge and only MD5, so MD5 leads by
	// default.
	DigestAlgorithms []string `yaml:"digest_algorithms" flag:"digest-algorithms" usage:"digest algorithms offered, most preferred first: SHA-256, MD5 (repeatable; JsSIP and SIP.js need MD5 last)"`
	// AuthFailuresPerSource is how many failed authentications one address
	// (an IPv6 /64) may make within ten minutes before it is blocked: for
	// 1 s, then twice as long after each further failure, up to
	// AuthBlockMax (package authguard). In trunk mode the PBX's refusals
	// count, and a blocked source's REGISTERs never reach it.
	AuthFailuresPerSource int `yaml:"auth_failures_per_source" flag:"auth-failures-per-source" usage:"failed authentications an address may make in 10 minutes before it is blocked (with doubling blocks)"`
	// AuthFailuresPerUser is how many failed authentications for one user
	// name, from anywhere, put it under attack: then one failure blocks
	// the address it came from.
	AuthFailuresPerUser int `yaml:"auth_failures_per_user" flag:"auth-failures-per-user" usage:"failed authentications for one user name in 10 minutes before every failing address is blocked at once"`
	// AuthBlockMax caps the doubling blocks.
	AuthBlockMax time.Duration `yaml:"auth_block_max" flag:"auth-block-max" usage:"longest block of an address that keeps failing authentication"`
	// SIPRate and SIPBurst are each source's token bucket for SIP messages
	// over UDP, TCP and WebSocket (an IPv6 source is its /64): beyond it a
	// datagram or frame is dropped, a TCP connection closed. The upstream
	// is exempt. The default lets one address carry a PBX-like load of
	// about 30 calls a second; browsers send a few messages a minute.
	SIPRate  int `yaml:"sip_rate" group:"Flood bounds (per source: an IPv4 address or an IPv6 /64)" flag:"sip-rate" usage:"SIP messages per second one source may send (token bucket; 0: no limit)"`
	SIPBurst int `yaml:"sip_burst" flag:"sip-burst" usage:"SIP messages one source may send at once"`
	// MaxSIPTransactions bounds the SIP server transactions alive at once
	// (each holds ~7 KB until its timers end, 32 s after the answer over
	// UDP); beyond it new requests get 503 with Retry-After.
	MaxSIPTransactions int `yaml:"max_sip_transactions" flag:"max-sip-transactions" usage:"SIP server transactions alive at once before new requests get 503 (0: no bound)"`
	// MaxConnections bounds open connections (HTTP, WebSocket, SIP TCP and
	// TLS) together; 0 derives it from the file descriptor limit, keeping
	// the media ports and some headroom free. 32 more are kept for health
	// checks (/healthz, /readyz, /metrics) only.
	MaxConnections int `yaml:"max_connections" flag:"max-connections" usage:"open connections in all (0: from the file descriptor limit, keeping room for media)"`
	// MaxConnectionsPerSource bounds the connections one source holds.
	MaxConnectionsPerSource int `yaml:"max_connections_per_source" flag:"max-connections-per-source" usage:"open connections one address (IPv6: /64) may hold (0: no cap)"`
	// HTTPRate and HTTPBurst are each source's token bucket for HTTP
	// requests to the API and WebSocket upgrades (health checks and
	// metrics are exempt); beyond it: 429 with Retry-After.
	HTTPRate  int `yaml:"http_rate" flag:"http-rate" usage:"API requests and WebSocket upgrades per second one source may make (0: no limit)"`
	HTTPBurst int `yaml:"http_burst" flag:"http-burst" usage:"API requests one source may make at once"`
	// WSRegisterTimeout closes a WebSocket that holds no registration and
	// no call this long after it opened (or after it lost them).
	WSRegisterTimeout time.Duration `yaml:"ws_register_timeout" flag:"ws-register-timeout" usage:"close a WebSocket without a registration or a call after this long (0: never)"`
	// Codecs are the codecs offered to and accepted from the trunk.
	Codecs []string `yaml:"codecs" group:"Media toward the trunk" flag:"codecs" usage:"codecs toward the trunk, in order (repeatable)"`
	// SDES offers RTP/SAVP with SDES keys (RFC 4568) to the trunk.
	SDES bool `yaml:"sdes" flag:"sdes" usage:"offer RTP/SAVP with SDES keys to the trunk"`
	// TLSCert and TLSKey serve HTTPS/WSS on --http and SIP over TLS.
	TLSCert string `yaml:"tls_cert" group:"TLS and the HTTP API" flag:"tls-cert" usage:"TLS certificate (PEM) for HTTPS/WSS and SIP TLS"`
	TLSKey  string `yaml:"tls_key" flag:"tls-key" usage:"TLS private key (PEM)"`
	// APIToken, when set, is required as "Authorization: Bearer TOKEN" on
	// /v1 and /metrics. Required when --http is not a loopback address.
	APIToken string `yaml:"api_token" flag:"api-token" usage:"bearer token required by the /v1 API and /metrics (required off loopback)"`
	// APIKeys are scoped API keys, NAME:SCOPES:USER:SHA256 (the token's
	// SHA-256 in hex; `strait token` makes one). Scopes: admin, call,
	// receive[:APP], cdr, user. Example: ["web:call,user:alice:9f86..."].
	APIKeys []string `yaml:"api_key" flag:"api-key" usage:"scoped API key NAME:SCOPES:USER:SHA256 (repeatable; strait token makes one)"`
	// JWTSecretFile holds the HS256 secret (32 bytes or more) that signs
	// short-lived tokens: a backend mints them for its pages, or asks
	// POST /v1/tokens.
	JWTSecretFile string `yaml:"jwt_secret_file" flag:"jwt-secret-file" usage:"file with the HS256 secret of short-lived signed tokens (at least 32 bytes)"`
	// TokenMaxTTL bounds a signed token's lifetime.
	TokenMaxTTL time.Duration `yaml:"token_max_ttl" flag:"token-max-ttl" usage:"longest lifetime of a signed token"`
	// CORSOrigins are the web origins whose pages may use the HTTP API
	// (CORS) and open SIP WebSockets (/ws), besides Strait's own pages:
	// scheme://host[:port], one * allowed, or "*" for any. Example:
	// ["https://app.example.com"].
	CORSOrigins []string `yaml:"cors_origin" flag:"cors-origin" usage:"web origin whose pages may use the API and /ws, scheme://host[:port] (repeatable; one * allowed)"`
	// Apps route callee numbers to web apps (controlplane/apps):
	// NAME:PATTERN:SECRET_FILE:URL. A call to a number PATTERN matches is
	// offered to the app by a webhook POSTed to URL, signed with the
	// secret in SECRET_FILE (at least 16 bytes); a token of scope
	// receive:NAME may answer it through the API. Example:
	// ["support:_8XXX:/etc/strait/support.secret:https://app.example.com/calls"].
	Apps []string `yaml:"app" group:"Calls to web apps" flag:"app" usage:"route numbers to a web app's webhook, NAME:PATTERN:SECRET_FILE:URL (repeatable)"`
	// AppAllowPrivate lets webhooks go to loopback, private and
	// link-local addresses (an app on the same host or network); off, a
	// webhook whose host resolves to one is not sent.
	AppAllowPrivate bool `yaml:"app_allow_private" flag:"app-allow-private" usage:"let webhooks reach loopback, private and link-local addresses"`
	// AppAnswerTimeout is how long a call routed to an app waits for its
	// answer before the caller gets 408.
	AppAnswerTimeout time.Duration `yaml:"app_answer_timeout" flag:"app-answer-timeout" usage:"a call routed to an app fails with 408 when not answered within this"`
	// ContactsFile is the shared address book (GET /v1/contacts): a YAML
	// list of {user, name}, besides the --user names and whoever is
	// registered or published presence. Optional.
	ContactsFile string `yaml:"contacts_file" flag:"contacts-file" usage:"address book file: a YAML list of {user, name} shown by GET /v1/contacts"`
	// MaxMessagesPerMinute bounds the instant messages each user may send
	// through the API a minute (as many at once); 0: no limit.
	MaxMessagesPerMinute int `yaml:"max_messages_per_minute" flag:"max-messages-per-minute" usage:"instant messages one user may send through the API per minute (0: no limit)"`
	// OfflineMessages bounds the instant messages kept for one offline
	// user (a standalone user or one of the address book's, with no
	// reachable browser and no API listener) until a browser registers or
	// the user's API event stream opens; past it new ones are refused (API
	// 507, SIP 480). 0 keeps none.
	OfflineMessages int `yaml:"offline_messages" flag:"offline-messages" usage:"instant messages kept for one offline user until it comes online (0: none kept)"`
	// OfflineMessagesPerSender bounds the kept messages one sender has
	// waiting, in all recipients' mailboxes: its share of the 10 000 kept
	// in all (default 500, 5%), so that one user cannot fill the mailbox
	// for everyone; past it its messages are refused (API 507 problem
	// sender-share-full, SIP 480) and counted. 1 to 10 000.
	OfflineMessagesPerSender int `yaml:"offline_messages_per_sender" flag:"offline-messages-per-sender" usage:"instant messages one sender may have kept for offline users, in all (its share of the 10000 kept in all)"`
	// OfflineMessageAge is how long a kept message waits before it is
	// dropped.
	OfflineMessageAge time.Duration `yaml:"offline_message_age" flag:"offline-message-age" usage:"drop a message kept for an offline user after this long"`
	// PBXAuthenticatesCalls, in trunk mode, lets browsers that did not
	// register through Strait call the upstream, as whoever their From
	// says: only for a PBX that challenges every INVITE itself. Off, only
	// a WebSocket with a live registration the PBX accepted may call, as
	// the identity it registered.
	PBXAuthenticatesCalls bool `yaml:"pbx_authenticates_calls" group:"Who may call what" flag:"pbx-authenticates-calls" usage:"trunk mode: the PBX challenges every INVITE itself, so unregistered browsers may call (default: only registered ones, as their registered identity)"`
	// AllowDial are destinations users may call: "PATTERN" for everyone,
	// "USER:PATTERN" for one user (see controlplane/dialplan). With no
	// global pattern every destination but the denied ones is allowed.
	// Example: ["_1XXX", "alice:_+44."].
	AllowDial []string `yaml:"allow_dial" flag:"allow-dial" usage:"destination pattern users may call, PATTERN or USER:PATTERN (repeatable; global patterns make an allowlist)"`
	// DenyDial are destination patterns refused unless allowed, besides
	// the international prefixes "+", "00" and "011". Example: ["_09."].
	DenyDial []string `yaml:"deny_dial" flag:"deny-dial" usage:"destination pattern refused unless allowed, besides international prefixes + 00 011 (repeatable)"`
	// MaxCallsPerUser bounds each user's calls in progress; 0: no limit.
	MaxCallsPerUser int `yaml:"max_calls_per_user" flag:"max-calls-per-user" usage:"calls one user may have in progress (0: no limit)"`
	// MaxCallRatePerUser bounds the calls each user may start in a
	// minute; 0: no limit.
	MaxCallRatePerUser int `yaml:"max_call_rate_per_user" flag:"max-call-rate-per-user" usage:"calls one user may start per minute (0: no limit)"`
	// State is where calls, registrations and nonce use are kept so that
	// they outlive the process: "embedded" (the default: a file under
	// DataDir, one process), "redis://[:PASSWORD@]HOST:PORT/DB" (also
	// rediss:// with TLS, redis+sentinel://HOST:PORT,.../MASTER/DB: several
	// control planes share it), or "memory" (nothing survives a restart).
	State string `yaml:"state" group:"State" flag:"state" usage:"state store: embedded (file under --data-dir), redis://HOST:PORT/DB, rediss://..., redis+sentinel://..., or memory"`
	// InstanceID names this control plane among those sharing a Redis
	// store: each stored call records its owner, and a lease under this
	// id tells the others it is alive (package cluster). Default: the host
	// name and a random suffix (a restart is then a new instance, which
	// takes the old one's calls over at once after a handover, or when its
	// lease expires after a crash). Give a fixed id (a StatefulSet's pod
	// name) to carry calls on at once after a crash too. Example: "sbc-1".
	InstanceID string `yaml:"instance_id" flag:"instance-id" usage:"this control plane's id among those sharing --state redis:// (default: host name and a random suffix)"`
	// DataDir holds the embedded state store (and, all in one, the
	// dataplane's keys): mode 0700, its files 0600. Default ./strait-data;
	// the systemd unit uses /var/lib/strait.
	DataDir string `yaml:"data_dir" flag:"data-dir" usage:"directory of the embedded state store"`
	// CDRFile appends each call record as a JSON line; empty keeps them in
	// memory only.
	CDRFile string `yaml:"cdr_file" group:"Call records" flag:"cdr-file" usage:"append call records to this file as JSON lines"`
	// CDRJournal keeps the accounting of calls in progress (start,
	// answer, media counters every CDRInterim, end), so that after a
	// crash each still gets its record; default: CDRFile + ".journal".
	CDRJournal string `yaml:"cdr_journal" flag:"cdr-journal" usage:"journal of calls in progress, so a crash loses no CDR (default: --cdr-file + .journal)"`
	// CDRInterim is how often calls' media counters are sampled and the
	// journal brought up to date: what a crash may cost a CDR.
	CDRInterim time.Duration `yaml:"cdr_interim" flag:"cdr-interim" usage:"interim accounting interval (journal, media counters)"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level" group:"Logging" flag:"log-level" usage:"log level: debug, info, warn, error"`
	// LogFormat is text (logfmt, one line per record) or json (one JSON
	// object per line, for log shippers). Either way a line about a call
	// carries the keys of package internal/logging (call, leg,
	// sip_call_id, node, session), each once.
	LogFormat string `yaml:"log_format" flag:"log-format" usage:"log format: text or json"`
	// HEP is the Homer capture server every SIP message is copied to, in
	// HEP version 3: udp://HOST:PORT (heplify-server listens on 9060).
	// Empty: no capture. Optional.
	HEP string `yaml:"hep" flag:"hep" group:"SIP capture (Homer)" usage:"send every SIP message, both sides, to this Homer capture server in HEP3: udp://HOST:9060"`
	// HEPCaptureID is the capture agent id Homer shows for this node.
	HEPCaptureID uint `yaml:"hep_capture_id" flag:"hep-capture-id" usage:"HEP capture agent id of this node"`
	// HEPPassword is the capture server's password (HEP auth key).
	HEPPassword string `yaml:"hep_password" flag:"hep-password" usage:"HEP capture server password"`
	// RegisterExpiry is the binding lifetime granted when a REGISTER names
	// none, and the most the standalone registrar grants.
	RegisterExpiry time.Duration `yaml:"register_expiry" group:"Timers" flag:"register-expiry" usage:"longest registration lifetime"`
	// OptionsInterval is how often the upstream is pinged; 0 disables.
	OptionsInterval time.Duration `yaml:"options_interval" flag:"options-interval" usage:"OPTIONS keepalive interval toward the upstream (0: off)"`
	// RingTimeout bounds an unanswered outgoing INVITE.
	RingTimeout time.Duration `yaml:"ring_timeout" flag:"ring-timeout" usage:"give up on an unanswered call after this long"`
	// MaxForks bounds the registrations of one user a call rings at once
	// in standalone mode (the most recent first; 1: no forking).
	MaxForks int `yaml:"max_forks" flag:"max-forks" usage:"registrations of one user a call rings at once, most recent first (1: only the most recent)"`
	// ShutdownTimeout bounds a shutdown (SIGTERM): calls are hung up in
	// parallel and peers that have not answered by then are not waited for.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout" flag:"shutdown-timeout" usage:"on SIGTERM, hang up every call within this long"`
}

// Default returns the configuration `strait` runs with when given nothing.
func Default() Config {
	return Config{
		HTTP:                    DefaultHTTP,
		SIP:                     DefaultSIP,
		Settings:                node.DefaultSettings(),
		PlainPorts:              "per-leg",
		Realm:                   DefaultRealm,
		DigestAlgorithms:        []string{"SHA-256", "MD5"},
		AuthFailuresPerSource:   5,
		AuthFailuresPerUser:     20,
		AuthBlockMax:            15 * time.Minute,
		SIPRate:                 DefaultSIPRate,
		SIPBurst:                DefaultSIPBurst,
		MaxSIPTransactions:      DefaultMaxSIPTransactions,
		MaxConnectionsPerSource: DefaultMaxConnectionsPerSource,
		HTTPRate:                DefaultHTTPRate,
		HTTPBurst:               DefaultHTTPBurst,
		WSRegisterTimeout:       DefaultWSRegisterTimeout,
		Codecs:                  append([]string(nil), DefaultCodecs...),
		LogLevel:                "info",
		LogFormat:               "text",
		RegisterExpiry:          DefaultRegisterExpiry,
		OptionsInterval:         DefaultOptionsInterval,
		RingTimeout:             DefaultRingTimeout,
		MaxForks:                DefaultMaxForks,

		CDRInterim:               DefaultCDRInterim,
		TokenMaxTTL:              apiauth.DefaultMaxTTL,
		AppAnswerTimeout:         apps.DefaultAnswerTimeout,
		MaxMessagesPerMinute:     DefaultMaxMessagesPerMinute,
		OfflineMessages:          messaging.DefaultMaxPerUser,
		OfflineMessagesPerSender: messaging.DefaultMaxPerSender,
		OfflineMessageAge:        messaging.DefaultMaxAge,
		MaxCallsPerUser:          DefaultMaxCallsPerUser,
		MaxCallRatePerUser:       DefaultMaxCallRatePerUser,
		ShutdownTimeout:          DefaultShutdownTimeout,
		State:                    "embedded",
		DataDir:                  DefaultDataDir,
	}
}
