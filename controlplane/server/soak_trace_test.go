package server

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/strait-sbc/strait/controlplane/state"
)

// soakLog keeps the log lines (Info and above) of every control plane of
// the soak, each tagged with the control plane's name, so that a call the
// soak loses can be explained from what the control planes did with it
// (which one held it, its takeover, its hang-up), not guessed at from a
// CI run that is gone.
type soakLog struct {
	mu    sync.Mutex // guards lines
	lines []string
}

// logger is the logger of the control plane name: into the soak's lines,
// and as testLog logs too (STRAIT_TEST_LOG).
func (l *soakLog) logger(name string, also *slog.Logger) *slog.Logger {
	h := slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo})
	return slog.New(slog.NewMultiHandler(h.WithAttrs([]slog.Attr{slog.String("cp", name)}), also.Handler()))
}

// Write implements io.Writer for the text handler: one record per call.
func (l *soakLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	l.lines = append(l.lines, strings.TrimSpace(string(b)))
	l.mu.Unlock()
	return len(b), nil
}

// grep returns the lines that contain any of keys (empty keys are
// ignored).
func (l *soakLog) grep(keys ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range l.lines {
		for _, k := range keys {
			if k != "" && strings.Contains(line, k) {
				out = append(out, line)
				break
			}
		}
	}
	return out
}

// soakCall is what the soak knows of one of its calls.
type soakCall struct {
	n        int
	user     string
	via      string    // the control plane it was set up through
	id       string    // Strait's call id, once answered
	callID   string    // the browser's Call-ID
	pbxID    string    // the PBX side's Call-ID
	answered time.Time // when the browser got the 200
}

// event notes what happened to the soak's control planes (kills and
// starts), for explain.
func (s *soak) event(format string, args ...any) {
	s.mu.Lock()
	s.events = append(s.events, time.Now().Format("15:04:05.000")+" "+fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

// explain says what the soak knows of call c: the control planes' kills
// and starts, which live one holds it, its record in Redis, its CDRs, and
// the control planes' log lines that name it or the membership.
func (s *soak) explain(c *soakCall) string {
	var b strings.Builder
	fmt.Fprintf(&b, "call %d of %s: set up through %s, answered %s, id %s, Call-IDs browser %s, PBX %s\n", c.n, c.user, c.via,
		c.answered.Format("15:04:05.000"), c.id, c.callID, c.pbxID)
	s.mu.Lock()
	events := append([]string(nil), s.events...)
	servers := s.servers
	names := append([]string(nil), s.names...)
	s.mu.Unlock()
	b.WriteString("control planes:\n")
	for _, e := range events {
		fmt.Fprintf(&b, "  %s\n", e)
	}
	for _, srv := range servers {
		if srv == nil {
			continue
		}
		for _, in := range srv.Engine.Calls() {
			if in.ID == c.id {
				fmt.Fprintf(&b, "held now by %s: state %s\n", srv.Instance, in.State)
			}
		}
		if m := srv.member.Load(); m != nil {
			fmt.Fprintf(&b, "%s: lease renewed at %s, owning %v\n", srv.Instance, m.RenewedAt().Format("15:04:05.000"), m.Owning())
		}
	}
	if c.id != "" {
		if rec, ok, err := s.r.store.Get(ctx(s.t), state.Calls, c.id); err != nil || ok {
			var r struct{ Owner string }
			json.Unmarshal(rec, &r)
			fmt.Fprintf(&b, "record in Redis: owner %q (err %v)\n", r.Owner, err)
		} else {
			b.WriteString("no record in Redis\n")
		}
		for _, l := range s.r.cdrs(names...) {
			if strings.Contains(l, c.id) {
				fmt.Fprintf(&b, "CDR: %s\n", l)
			}
		}
	}
	b.WriteString("log lines:\n")
	for _, l := range s.logs.grep(c.id, c.callID, c.pbxID, "cluster", "lease") {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	if os.Getenv("STRAIT_SOAK_LOG") != "" { // every line, for a failure the lines above do not explain
		for _, l := range s.logs.grep(" ") {
			fmt.Fprintf(&b, "  all: %s\n", l)
		}
	}
	return b.String()
}
