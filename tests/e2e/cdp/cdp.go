// Package cdp is a small Chrome DevTools Protocol client, just enough for
// Strait's end-to-end tests to drive a headless Chromium: open pages,
// navigate, evaluate JavaScript (awaiting promises), follow console output
// and uncaught exceptions, and take screenshots.
//
// It talks to Chromium over --remote-debugging-pipe (NUL-terminated JSON on
// file descriptors 3 and 4), the transport Playwright and Puppeteer use, so
// there is no debugging port to find, race for or leave open, and the
// protocol dies with the process. Pages are attached in flattened mode: one
// connection carries every page's session.
//
// The protocol is documented at https://chromedevtools.github.io/devtools-protocol/.
package cdp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// ErrClosed is returned by calls made after the browser exited or was closed.
var ErrClosed = errors.New("cdp: browser closed")

// Options configure Launch.
type Options struct {
	// Path is the Chromium executable. Required.
	Path string
	// Args are Chromium's command-line flags; Launch adds
	// --remote-debugging-pipe and --user-data-dir.
	Args []string
	// UserDataDir is the profile directory; it should be new and empty so
	// that no state leaks between runs. Required.
	UserDataDir string
	// Output, if not nil, receives Chromium's stdout and stderr.
	Output io.Writer
	// SysProcAttr, if not nil, is given to the process (for example
	// Pdeathsig, so that the browser dies with the test).
	SysProcAttr *syscall.SysProcAttr
}

// Browser is a running Chromium. Its methods are safe for concurrent use.
type Browser struct {
	cmd  *exec.Cmd
	w    io.WriteCloser // fd 3 of the child: commands to Chromium
	done chan struct{}  // closed when the reader stops (the browser exited)

	writeMu sync.Mutex // serialises writes to w

	mu       sync.Mutex // guards the fields below
	nextID   int64
	pending  map[int64]chan message
	sessions map[string]*Page
	err      error // why the reader stopped
}

// message is any frame on the pipe: a response (ID set) or an event (Method set).
type message struct {
	ID        int64           `json:"id,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    string `json:"data,omitempty"`
	} `json:"error,omitempty"`
}

// Launch starts Chromium and connects to it. The browser lives until Close
// (or until ctx is done: it is started with exec.CommandContext).
func Launch(ctx context.Context, opt Options) (*Browser, error) {
	if opt.Path == "" || opt.UserDataDir == "" {
		return nil, errors.New("cdp: Options.Path and Options.UserDataDir are required")
	}
	toChrome, ourW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	ourR, fromChrome, err := os.Pipe()
	if err != nil {
		toChrome.Close()
		ourW.Close()
		return nil, err
	}
	args := append([]string{"--remote-debugging-pipe", "--user-data-dir=" + opt.UserDataDir}, opt.Args...)
	cmd := exec.CommandContext(ctx, opt.Path, args...)
	cmd.ExtraFiles = []*os.File{toChrome, fromChrome} // fds 3 and 4
	cmd.Stdout, cmd.Stderr = opt.Output, opt.Output
	cmd.SysProcAttr = opt.SysProcAttr
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Start()
	toChrome.Close()
	fromChrome.Close()
	if err != nil {
		ourW.Close()
		ourR.Close()
		return nil, fmt.Errorf("cdp: start %s: %w", opt.Path, err)
	}
	b := &Browser{
		cmd:      cmd,
		w:        ourW,
		done:     make(chan struct{}),
		pending:  make(map[int64]chan message),
		sessions: make(map[string]*Page),
	}
	go b.read(ourR)
	// Fail fast if the binary exits at once (bad flag, missing library).
	var v struct {
		Product string `json:"product"`
	}
	vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := b.call(vctx, "", "Browser.getVersion", nil, &v); err != nil {
		b.Close()
		return nil, fmt.Errorf("cdp: browser did not answer: %w", err)
	}
	return b, nil
}

// read dispatches frames from Chromium until the pipe closes.
func (b *Browser) read(r io.ReadCloser) {
	defer r.Close()
	br := bufio.NewReaderSize(r, 1<<20)
	var err error
	for {
		var frame []byte
		frame, err = br.ReadBytes(0)
		if err != nil {
			break
		}
		var m message
		if json.Unmarshal(frame[:len(frame)-1], &m) != nil {
			continue
		}
		b.mu.Lock()
		if m.ID != 0 {
			if ch := b.pending[m.ID]; ch != nil {
				delete(b.pending, m.ID)
				ch <- m
			}
			b.mu.Unlock()
			continue
		}
		p := b.sessions[m.SessionID]
		b.mu.Unlock()
		if p != nil {
			p.event(m.Method, m.Params)
		}
	}
	if errors.Is(err, io.EOF) {
		err = ErrClosed
	}
	b.mu.Lock()
	b.err = err
	for id, ch := range b.pending {
		delete(b.pending, id)
		close(ch)
	}
	b.mu.Unlock()
	close(b.done)
}

// call sends one command (to the browser when session is "", else to that
// page session) and decodes its result into result, if not nil.
func (b *Browser) call(ctx context.Context, session, method string, params, result any) error {
	if params == nil {
		params = struct{}{}
	}
	raw, err := json.Marshal(params)
	if err != nil {
		return err
	}
	ch := make(chan message, 1)
	b.mu.Lock()
	if b.err != nil {
		err := b.err
		b.mu.Unlock()
		return err
	}
	b.nextID++
	id := b.nextID
	b.pending[id] = ch
	b.mu.Unlock()

	frame, _ := json.Marshal(message{ID: id, SessionID: session, Method: method, Params: raw})
	b.writeMu.Lock()
	_, err = b.w.Write(append(frame, 0))
	b.writeMu.Unlock()
	if err != nil {
		b.forget(id)
		return fmt.Errorf("cdp: %s: %w", method, err)
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return fmt.Errorf("cdp: %s: %w", method, ErrClosed)
		}
		if m.Error != nil {
			return fmt.Errorf("cdp: %s: %s %s", method, m.Error.Message, m.Error.Data)
		}
		if result != nil {
			return json.Unmarshal(m.Result, result)
		}
		return nil
	case <-ctx.Done():
		b.forget(id)
		return fmt.Errorf("cdp: %s: %w", method, ctx.Err())
	}
}

func (b *Browser) forget(id int64) {
	b.mu.Lock()
	delete(b.pending, id)
	b.mu.Unlock()
}

// NewPage opens a new tab on about:blank and attaches to it, with console
// and exception events on.
func (b *Browser) NewPage(ctx context.Context) (*Page, error) {
	var t struct {
		TargetID string `json:"targetId"`
	}
	if err := b.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &t); err != nil {
		return nil, err
	}
	var s struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": t.TargetID, "flatten": true}, &s); err != nil {
		return nil, err
	}
	p := &Page{b: b, target: t.TargetID, session: s.SessionID}
	b.mu.Lock()
	b.sessions[s.SessionID] = p
	b.mu.Unlock()
	for _, m := range []string{"Runtime.enable", "Page.enable", "Log.enable"} {
		if err := p.call(ctx, m, nil, nil); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Close asks Chromium to quit, waits for it a few seconds, then kills it,
// and returns once the process is gone. Closing twice is harmless.
func (b *Browser) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = b.call(ctx, "", "Browser.close", nil, nil)
	b.w.Close()
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		b.cmd.Process.Kill()
	}
	b.cmd.Wait()
	return nil
}

// Log is one line of page output: console calls, uncaught exceptions and
// browser log entries (failed loads, deprecations).
type Log struct {
	Time  time.Time
	Level string // log, info, warning, error, debug; "exception" for an uncaught one
	Text  string
}

func (l Log) String() string {
	return fmt.Sprintf("%s [%s] %s", l.Time.Format("15:04:05.000"), l.Level, l.Text)
}

// Page is one attached tab. Its methods are safe for concurrent use.
type Page struct {
	b       *Browser
	target  string
	session string

	mu    sync.Mutex // guards logs and onLog
	logs  []Log
	onLog func(Log)
}

func (p *Page) call(ctx context.Context, method string, params, result any) error {
	return p.b.call(ctx, p.session, method, params, result)
}

// OnLog registers f to be called (from the reading goroutine; f must not
// block) with every log line, after the ones already collected.
func (p *Page) OnLog(f func(Log)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.logs {
		f(l)
	}
	p.onLog = f
}

// Logs returns the log lines collected so far.
func (p *Page) Logs() []Log {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Log(nil), p.logs...)
}

// Exceptions returns the uncaught exceptions seen so far.
func (p *Page) Exceptions() []Log {
	var out []Log
	for _, l := range p.Logs() {
		if l.Level == "exception" {
			out = append(out, l)
		}
	}
	return out
}

type remoteObject struct {
	Type        string          `json:"type"`
	Subtype     string          `json:"subtype,omitempty"`
	Value       json.RawMessage `json:"value,omitempty"`
	Description string          `json:"description,omitempty"`
}

func (o remoteObject) String() string {
	if len(o.Value) > 0 {
		var s string
		if json.Unmarshal(o.Value, &s) == nil {
			return s
		}
		return string(o.Value)
	}
	if o.Description != "" {
		return o.Description
	}
	return o.Type
}

type exceptionDetails struct {
	Text      string        `json:"text"`
	URL       string        `json:"url"`
	Line      int           `json:"lineNumber"`
	Exception *remoteObject `json:"exception"`
}

func (d *exceptionDetails) String() string {
	s := d.Text
	if d.Exception != nil && d.Exception.Description != "" {
		s = d.Exception.Description
	}
	if d.URL != "" {
		s += fmt.Sprintf(" (%s:%d)", d.URL, d.Line+1)
	}
	return s
}

func (p *Page) event(method string, params json.RawMessage) {
	var l Log
	switch method {
	case "Runtime.consoleAPICalled":
		var e struct {
			Type string         `json:"type"`
			Args []remoteObject `json:"args"`
		}
		if json.Unmarshal(params, &e) != nil {
			return
		}
		l = Log{Level: e.Type, Text: formatConsole(e.Args)}
	case "Runtime.exceptionThrown":
		var e struct {
			Details exceptionDetails `json:"exceptionDetails"`
		}
		if json.Unmarshal(params, &e) != nil {
			return
		}
		l = Log{Level: "exception", Text: e.Details.String()}
	case "Log.entryAdded":
		var e struct {
			Entry struct {
				Level  string `json:"level"`
				Source string `json:"source"`
				Text   string `json:"text"`
				URL    string `json:"url"`
			} `json:"entry"`
		}
		if json.Unmarshal(params, &e) != nil {
			return
		}
		l = Log{Level: e.Entry.Level, Text: e.Entry.Source + ": " + e.Entry.Text + " " + e.Entry.URL}
	default:
		return
	}
	l.Time = time.Now()
	p.mu.Lock()
	p.logs = append(p.logs, l)
	f := p.onLog
	p.mu.Unlock()
	if f != nil {
		f(l)
	}
}

// formatConsole renders console arguments as the console would: a first
// string argument is a format whose %s, %d, %i, %f, %o and %O take the next
// arguments and whose %c (CSS) drops one; the rest are appended.
func formatConsole(args []remoteObject) string {
	var buf bytes.Buffer
	rest := args
	if len(args) > 0 && args[0].Type == "string" {
		format := args[0].String()
		rest = args[1:]
		for i := 0; i < len(format); i++ {
			if format[i] != '%' || i+1 == len(format) {
				buf.WriteByte(format[i])
				continue
			}
			i++
			switch format[i] {
			case 'c':
				if len(rest) > 0 {
					rest = rest[1:]
				}
			case 's', 'd', 'i', 'f', 'o', 'O':
				if len(rest) > 0 {
					buf.WriteString(rest[0].String())
					rest = rest[1:]
				}
			case '%':
				buf.WriteByte('%')
			default:
				buf.WriteByte('%')
				buf.WriteByte(format[i])
			}
		}
	}
	for _, a := range rest {
		if buf.Len() > 0 {
			buf.WriteByte(' ')
		}
		buf.WriteString(a.String())
	}
	return buf.String()
}

// Navigate loads url and waits until the document and its scripts are
// loaded (document.readyState is "complete").
func (p *Page) Navigate(ctx context.Context, url string) error {
	var r struct {
		ErrorText string `json:"errorText"`
	}
	if err := p.call(ctx, "Page.navigate", map[string]any{"url": url}, &r); err != nil {
		return err
	}
	if r.ErrorText != "" {
		return fmt.Errorf("cdp: navigate %s: %s", url, r.ErrorText)
	}
	return p.WaitFor(ctx, `document.readyState === "complete"`)
}

// Eval evaluates a JavaScript expression in the page, awaits it if it is a
// promise, and decodes its JSON value into out (if not nil). A thrown
// exception or rejected promise is returned as an error.
func (p *Page) Eval(ctx context.Context, expr string, out any) error {
	var r struct {
		Result    remoteObject      `json:"result"`
		Exception *exceptionDetails `json:"exceptionDetails"`
	}
	err := p.call(ctx, "Runtime.evaluate", map[string]any{
		"expression": expr, "awaitPromise": true, "returnByValue": true, "userGesture": true,
	}, &r)
	if err != nil {
		return err
	}
	if r.Exception != nil {
		return fmt.Errorf("javascript: %s", r.Exception)
	}
	if out == nil || len(r.Result.Value) == 0 {
		return nil
	}
	return json.Unmarshal(r.Result.Value, out)
}

// WaitFor evaluates expr every 100 ms until it is truthy or ctx is done.
// Exceptions thrown by expr count as false.
func (p *Page) WaitFor(ctx context.Context, expr string) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		var ok bool
		err := p.Eval(ctx, "!!("+expr+")", &ok)
		if err == nil && ok {
			return nil
		}
		if err != nil {
			last = err
		}
		if errors.Is(err, ErrClosed) {
			return err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("waiting for %s: %w (last error: %v)", expr, ctx.Err(), last)
			}
			return fmt.Errorf("waiting for %s: %w", expr, ctx.Err())
		case <-tick.C:
		}
	}
}

// Screenshot returns a PNG of the page's viewport.
func (p *Page) Screenshot(ctx context.Context) ([]byte, error) {
	var r struct {
		Data []byte `json:"data"` // base64 in JSON, decoded by encoding/json
	}
	if err := p.call(ctx, "Page.captureScreenshot", map[string]any{"format": "png"}, &r); err != nil {
		return nil, err
	}
	return r.Data, nil
}

// SetViewport sets the page's viewport size in CSS pixels (and the device
// scale factor, 0 for the default).
func (p *Page) SetViewport(ctx context.Context, width, height int, scale float64) error {
	return p.call(ctx, "Emulation.setDeviceMetricsOverride", map[string]any{
		"width": width, "height": height, "deviceScaleFactor": scale, "mobile": false,
	}, nil)
}

// Close closes the tab.
func (p *Page) Close(ctx context.Context) error {
	err := p.b.call(ctx, "", "Target.closeTarget", map[string]any{"targetId": p.target}, nil)
	p.b.mu.Lock()
	delete(p.b.sessions, p.session)
	p.b.mu.Unlock()
	return err
}
