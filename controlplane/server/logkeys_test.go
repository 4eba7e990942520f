package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strait-sbc/strait/internal/logging"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a
// logger's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Split(strings.TrimSpace(s.b.String()), "\n")
}

// A browser-to-browser call, logged at debug level in both formats by the
// control plane, sipgo and the dataplane node, as cmd/strait logs: no
// line repeats a key, and the lines about the call carry its identity
// under the keys of package logging, so that one call can be followed
// from its SIP Call-IDs to the dataplane session.
func TestLogKeysOfACall(t *testing.T) {
	var jsonOut, textOut syncBuffer
	opts := &slog.HandlerOptions{Level: slog.LevelDebug}
	log := slog.New(logging.Dedup(slog.NewMultiHandler(slog.NewJSONHandler(&jsonOut, opts), slog.NewTextHandler(&textOut, opts))))
	n := newNodeLog(t, log.With(logging.KeyComponent, "dataplane"))
	cfg := testConfig()
	cfg.HTTP, cfg.SIP = "127.0.0.1:0", "127.0.0.1:0"
	cfg.OptionsInterval = 0
	cfg.Users = []string{"alice:a-secret", "bob:b-secret"}
	srv, err := New(Options{Config: cfg, Nodes: nodesOf(n), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	e := &env{t: t, srv: srv, node: n}

	alice := registered(t, e, "alice", "a-secret")
	bob := registered(t, e, "bob", "b-secret")
	ma := newBrowserMedia(t)
	call, err := alice.Invite(ctx(t), "bob", []byte(ma.Offer))
	if err != nil {
		t.Fatal(err)
	}
	inc, err := bob.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	mbob := newAnswerer(t)
	go inc.Answer(mbob.answer(t, inc.Invite.Body()))
	res, err := call.WaitAnswer(ctx(t), "")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("answer: %v %v", res, err)
	}
	call.Ack(ctx(t))
	if err := ma.Accept(string(res.Body())); err != nil {
		t.Fatal(err)
	}
	e.waitConnected()
	ss, _ := n.ListSessions(ctx(t))
	if len(ss) != 1 {
		t.Fatalf("%d sessions", len(ss))
	}
	callID, sessionID := ss[0].GetLabels()["call"], ss[0].GetId()
	if err := inc.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := call.WaitEnded(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	e.waitSessions(0)
	e.waitCalls(0)
	ma.Close()
	mbob.Close()

	// Every line, in both formats, has each key once.
	var records []map[string]any
	for _, line := range jsonOut.lines() {
		keys, err := jsonKeys(line)
		if err != nil {
			t.Fatalf("json line %q: %v", line, err)
		}
		if d := repeated(keys); d != "" {
			t.Errorf("json: key %q repeated in %s", d, line)
		}
		var m map[string]any
		json.Unmarshal([]byte(line), &m)
		records = append(records, m)
	}
	for _, line := range textOut.lines() {
		if d := repeated(logfmtKeys(line)); d != "" {
			t.Errorf("text: key %q repeated in %s", d, line)
		}
	}
	if len(records) < 20 {
		t.Fatalf("only %d log lines at debug level", len(records))
	}
	// The call's lines name it, and tie it to both SIP Call-IDs and to
	// the dataplane session; the node's lines about the session name the
	// call too. No other spelling of these keys is used.
	var sipIDs = map[string]bool{}
	var nodeLines, callLines int
	for _, m := range records {
		for _, k := range []string{"call_id", "callid", "session_id", "node_id", "leg_index"} {
			if _, ok := m[k]; ok {
				t.Errorf("key %q instead of one of package logging's: %v", k, m)
			}
		}
		if m[logging.KeyCall] == callID {
			callLines++
			if id, ok := m[logging.KeySIPCallID].(string); ok {
				sipIDs[id] = true
			}
		}
		if m[logging.KeySession] == sessionID && m[logging.KeyComponent] == "dataplane" {
			nodeLines++
			if m[logging.KeyCall] != callID || m[logging.KeyNode] != "test" {
				t.Errorf("dataplane line about session %s without call %s and node test: %v", sessionID, callID, m)
			}
		}
	}
	if !sipIDs[call.CallID] || !sipIDs[inc.CallID] {
		t.Errorf("lines of call %s name SIP Call-IDs %v; want both %s and %s", callID, sipIDs, call.CallID, inc.CallID)
	}
	if callLines < 3 || nodeLines < 2 {
		t.Errorf("%d lines name call %s, %d dataplane lines its session", callLines, callID, nodeLines)
	}
}

// jsonKeys lists the keys of a JSON object, nested objects' as
// "outer.inner", in order, repeats included (encoding/json would keep the
// last of a repeated key silently).
func jsonKeys(line string) ([]string, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	var keys []string
	var walk func(prefix string) error
	walk = func(prefix string) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		d, ok := tok.(json.Delim)
		if !ok {
			return nil
		}
		switch d {
		case '{':
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				keys = append(keys, prefix+k.(string))
				if err := walk(prefix + k.(string) + "."); err != nil {
					return err
				}
			}
		case '[':
			for dec.More() {
				if err := walk(prefix + "[]."); err != nil {
					return err
				}
			}
		}
		_, err = dec.Token() // the closing delimiter
		return err
	}
	if err := walk(""); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("trailing data after the object")
	}
	return keys, nil
}

// logfmtKeys lists the keys of a slog text line: key=value pairs
// separated by spaces, values maybe quoted with backslash escapes.
func logfmtKeys(line string) []string {
	var keys []string
	for i := 0; i < len(line); {
		eq := strings.IndexByte(line[i:], '=')
		if eq < 0 {
			break
		}
		keys = append(keys, line[i:i+eq])
		i += eq + 1
		if i < len(line) && line[i] == '"' {
			for i++; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' {
					i++
				}
			}
			i++
		} else {
			for i < len(line) && line[i] != ' ' {
				i++
			}
		}
		for i < len(line) && line[i] == ' ' {
			i++
		}
	}
	return keys
}

// repeated returns a key that occurs twice in keys, or "".
func repeated(keys []string) string {
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k] {
			return k
		}
		seen[k] = true
	}
	return ""
}
