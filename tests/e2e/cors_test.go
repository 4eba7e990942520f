package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/apiauth"
	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// corsPage is a blank page whose script places a call through Strait's
// API from another origin, as a web app would: a real RTCPeerConnection
// offer (Chromium's fake microphone), POST /v1/calls with a bearer token
// (a CORS preflight, for Authorization and JSON), the answer applied, ICE
// and DTLS up, then DELETE.
const corsPage = `<!doctype html><meta charset="utf-8"><title>cors</title><script>
async function api(base, token, method, path, body) {
  try {
    const res = await fetch(base + path, {method, headers: {authorization: 'Bearer ' + token,
      'content-type': 'application/json'}, body: body ? JSON.stringify(body) : undefined});
    return {status: res.status, body: await res.text()};
  } catch (e) {
    return {status: 0, error: String(e)}; // the browser refused to let the page read it
  }
}
async function callEcho(base, token) {
  const pc = new RTCPeerConnection();
  const media = await navigator.mediaDevices.getUserMedia({audio: true});
  media.getTracks().forEach((t) => pc.addTrack(t, media));
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((ok) => { if (pc.iceGatheringState === 'complete') ok();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && ok(); });
  const r = await api(base, token, 'POST', '/v1/calls', {to: 'echo', offer: pc.localDescription.sdp});
  if (r.status !== 201) { pc.close(); return r; }
  const {id, answer} = JSON.parse(r.body);
  await pc.setRemoteDescription({type: 'answer', sdp: answer});
  await new Promise((ok, fail) => { const t = setTimeout(() => fail(new Error('not connected: ' + pc.connectionState)), 15000);
    const check = () => { if (pc.connectionState === 'connected') { clearTimeout(t); ok(); } };
    pc.onconnectionstatechange = check; check(); });
  const d = await api(base, token, 'DELETE', '/v1/calls/' + id);
  pc.close();
  return {status: r.status, id, connected: true, hangup: d.status};
}
</script>`

// Issue 14: a page on another origin (allowed by --cors-origin) calls
// through the API with a scoped token, and is refused with a wrong one or
// a token without the scope; a page on an origin not in the list cannot
// read the API's answers at all.
func TestCORSFromAnotherOrigin(t *testing.T) {
	e := harness.New(t, harness.NeedStrait, harness.NeedChromium)
	token, key, err := apiauth.NewToken("webapp", "alice", []string{apiauth.ScopeCall})
	if err != nil {
		t.Fatal(err)
	}
	// The harness allows http://127.0.0.1:* (the pages' origins).
	s := e.StartStrait(harness.StraitConfig{Token: "operator", Args: []string{"--api-key", key}})
	pages := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, corsPage)
	}))
	t.Cleanup(pages.Close)
	br := e.StartBrowser()
	var p *harness.Page
	e.Step("open a page on another origin", 20*time.Second, func(ctx context.Context) (err error) {
		p, err = br.Open(ctx, "cors", pages.URL+"/")
		if err == nil && strings.HasPrefix(pages.URL, s.URL()) {
			err = fmt.Errorf("the page %s is on strait's origin %s", pages.URL, s.URL())
		}
		return err
	})
	type result struct {
		Status    int
		Body      string
		Error     string
		ID        string
		Connected bool
		Hangup    int
	}
	eval := func(ctx context.Context, p *harness.Page, js string) (result, error) {
		var r result
		err := p.Eval(ctx, js, &r)
		return r, err
	}
	base := fmt.Sprintf("%q", s.URL())
	e.Step("the page calls echo through CORS with its scoped token", 30*time.Second, func(ctx context.Context) error {
		r, err := eval(ctx, p, `callEcho(`+base+`, "`+token+`")`)
		if err != nil {
			return err
		}
		if r.Status != 201 || !r.Connected || r.Hangup != 204 {
			return fmt.Errorf("call: %+v", r)
		}
		return nil
	})
	e.Step("a wrong token is refused, and the page can read why", 10*time.Second, func(ctx context.Context) error {
		r, err := eval(ctx, p, `api(`+base+`, "strait_wrong", "GET", "/v1/calls")`)
		if err != nil {
			return err
		}
		if r.Status != 401 || !strings.Contains(r.Body, `"status":401`) {
			return fmt.Errorf("wrong token: %+v", r)
		}
		return nil
	})
	e.Step("the token's scope does not reach call records", 10*time.Second, func(ctx context.Context) error {
		r, err := eval(ctx, p, `api(`+base+`, "`+token+`", "GET", "/v1/cdrs")`)
		if err != nil {
			return err
		}
		if r.Status != 403 {
			return fmt.Errorf("cdrs with a call-only token: %+v", r)
		}
		return nil
	})
	// localhost is another origin than 127.0.0.1, and not in the list.
	other := strings.Replace(pages.URL, "127.0.0.1", "localhost", 1)
	e.Step("a page on an origin not in --cors-origin cannot read the API", 20*time.Second, func(ctx context.Context) error {
		q, err := br.Open(ctx, "cors-other", other+"/")
		if err != nil {
			return err
		}
		r, err := eval(ctx, q, `api(`+base+`, "`+token+`", "GET", "/v1/calls")`)
		if err != nil {
			return err
		}
		if r.Status != 0 || r.Error == "" {
			return fmt.Errorf("from %s: %+v, want the browser to refuse", other, r)
		}
		// The control: strait answers that page (an opaque no-cors
		// response), so the refusal above is CORS, not the network.
		var kind string
		if err := q.Eval(ctx, `fetch(`+base+` + "/healthz", {mode: "no-cors"}).then((r) => r.type)`, &kind); err != nil || kind != "opaque" {
			return fmt.Errorf("no-cors control from %s: %q %v", other, kind, err)
		}
		return nil
	})
}
