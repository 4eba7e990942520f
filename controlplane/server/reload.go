package server

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/internal/tlsconfig"
)

// liveFields are the configuration fields (by flag name) Reload applies
// to the running server. Every other field needs a restart: listeners,
// ports, the upstream, the dataplane nodes, codecs, timers.
var liveFields = map[string]bool{
	"allow-dial": true, "deny-dial": true, "max-calls-per-user": true, "max-call-rate-per-user": true,
	"api-token": true, "api-key": true, "jwt-secret-file": true, "token-max-ttl": true, "log-level": true,
	// Users change live when the registrar has users before and after
	// (from none, or to none, the open demo mode is a restart).
	"user": true,
	// Certificates are reread from the same files; new paths need a
	// restart.
}

// Reload applies what can change live from cfg, a complete and validated
// configuration (what SIGHUP reads again): it rereads the TLS
// certificates (HTTPS/WSS and SIP TLS, the mTLS client certificate toward
// dataplane nodes: handshakes from now on use them, connections and calls
// already up are untouched), and takes the dial plan and per-user limits,
// the API's credentials (token, keys, JWT secret, reread from its file),
// the log level and the standalone users. It returns the flags that changed but
// need a restart (still in force as they were), and an error when
// nothing was applied because something is wrong: the running
// configuration stays then.
func (s *Server) Reload(cfg config.Config) (needRestart []string, err error) {
	p, err := cfg.Parse()
	if err != nil {
		return nil, err
	}
	auth, err := cfg.APIAuth()
	if err != nil {
		return nil, err
	}
	plan := p.DialPlan
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	needRestart = restartOnly(s.cfg, cfg)
	usersLive := s.digest != nil && len(cfg.Users) > 0
	if !usersLive && !slices.Equal(s.cfg.Users, cfg.Users) {
		needRestart = append(needRestart, "--user")
	}
	var errs []error
	for flag, cert := range map[string]*tlsconfig.Certificate{"--tls-cert": s.tlsCert, "--dataplane-cert": s.dpCert} {
		if cert == nil {
			continue
		}
		if err := cert.Reload(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w (the certificate in use stays)", flag, err))
		}
	}
	if usersLive {
		s.setUsers(p.Users)
	}
	s.Guard.SetPlan(plan)
	s.auth.Store(auth)
	if s.level != nil {
		var l = s.level.Level()
		if err := l.UnmarshalText([]byte(strings.ToUpper(cfg.LogLevel))); err == nil {
			s.level.Set(l)
		}
	}
	live := s.cfg
	live.AllowDial, live.DenyDial = cfg.AllowDial, cfg.DenyDial
	live.MaxCallsPerUser, live.MaxCallRatePerUser = cfg.MaxCallsPerUser, cfg.MaxCallRatePerUser
	live.APIToken, live.LogLevel = cfg.APIToken, cfg.LogLevel
	live.APIKeys, live.JWTSecretFile, live.TokenMaxTTL = cfg.APIKeys, cfg.JWTSecretFile, cfg.TokenMaxTTL
	if usersLive {
		live.Users = cfg.Users
	}
	s.cfg = live
	s.log.Info("configuration reloaded", "need_restart", needRestart, "errors", len(errs))
	return needRestart, errors.Join(errs...)
}

// restartOnly lists the flags whose values differ between a and b and
// that Reload cannot apply.
func restartOnly(a, b config.Config) []string {
	return changedFlags(reflect.ValueOf(a), reflect.ValueOf(b))
}

// changedFlags compares two configuration structs field by field, into
// embedded ones (node.Settings), and lists the flags that differ.
func changedFlags(va, vb reflect.Value) []string {
	var out []string
	t := va.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("flag")
		if name == "" && f.Anonymous && f.Type.Kind() == reflect.Struct {
			out = append(out, changedFlags(va.Field(i), vb.Field(i))...)
			continue
		}
		if name == "" || liveFields[name] {
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			out = append(out, "--"+name)
		}
	}
	return out
}

// setUsers gives the registrar a new user table. The bindings of users
// removed or whose password changed are dropped (whoever registered with
// the old password must prove the new one); their calls in progress go
// on.
func (s *Server) setUsers(users []config.User) {
	next := make(map[string]string, len(users))
	for _, u := range users {
		next[u.Name] = u.Password
	}
	prev := s.users
	s.users = users
	s.digest.SetUsers(next)
	for _, u := range prev {
		if pw, ok := next[u.Name]; ok && pw == u.Password {
			continue
		}
		for _, b := range s.Registry.Lookup(u.Name) {
			s.Registry.Remove(b.Key)
		}
		s.log.Info("user removed or its password changed: bindings dropped", "user", u.Name)
	}
}

// setAuth builds the API's credentials from cfg and puts them in force.
func (s *Server) setAuth(cfg config.Config) error {
	auth, err := cfg.APIAuth()
	if err != nil {
		return err
	}
	s.auth.Store(auth)
	return nil
}
