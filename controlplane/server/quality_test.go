package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/b2bua"
	"github.com/strait-sbc/strait/controlplane/cdr"
	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/hep"
	"github.com/strait-sbc/strait/controlplane/hep/heptest"
	"github.com/strait-sbc/strait/dataplane/node"
	"github.com/strait-sbc/strait/dataplane/portalloc"
)

// TestCallQualityReported: a web app's call to the echo extension, whose
// pion browser sends paced media and RTCP reports, shows its media quality
// in periodic "quality" events, in the call resource while it lasts, in the
// CDR once it ended (min/avg/max and the per-interval series) and in the
// node's histograms on /metrics.
func TestCallQualityReported(t *testing.T) {
	var n *node.Node
	for range 20 {
		base := uint16(20000 + 2*rand.IntN(20000))
		var err error
		n, err = node.New(node.Config{ID: "test", MediaAddrs: []netip.Addr{loopback},
			WebRTCPorts: portalloc.Range{First: base, Last: base + 1}, RTPPorts: portalloc.Range{First: base + 2, Last: base + 41},
			Workers: 1, QualityInterval: time.Second})
		if err == nil {
			t.Cleanup(func() { n.Close() })
			break
		}
	}
	if n == nil {
		t.Fatal("no dataplane node")
	}
	homer, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer homer.Close()
	reports := make(chan *heptest.Decoded, 256)
	go func() {
		buf := make([]byte, 65536)
		for {
			k, _, err := homer.ReadFrom(buf)
			if err != nil {
				return
			}
			if d, err := heptest.Decode(bytes.Clone(buf[:k])); err == nil && d.ProtoType == hep.ProtoRTCPJSON {
				select {
				case reports <- d:
				default:
				}
			}
		}
	}()
	e := startOpts(t, func(c *config.Config) {
		c.APIToken = "s3cret"
		c.CDRInterim = time.Second
		c.HTTPRate = 0 // the test polls the call
		c.HEP = "udp://" + homer.LocalAddr().String()
	}, func(o *Options) { o.Nodes = nodesOf(n) })
	e.node = n
	e.srv.Metrics.Registry.MustRegister(n.TrafficCollector()) // as the all-in-one does with its own node
	api := apiClient{t: t, base: "http://" + e.srv.HTTPAddr(), token: "s3cret"}

	req, _ := http.NewRequest("GET", api.base+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	stream, err := http.DefaultClient.Do(req)
	if err != nil || stream.StatusCode != 200 {
		t.Fatalf("events: %v %v", stream, err)
	}
	defer stream.Body.Close()
	events := make(chan string, 256)
	go func() {
		sc := bufio.NewScanner(stream.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				events <- d
			}
		}
	}()

	mb := newBrowserMedia(t)
	code, body := api.do("POST", "/v1/calls", map[string]any{"to": "echo", "offer": mb.Offer})
	if code != 201 {
		t.Fatalf("POST /v1/calls: %d %s", code, body)
	}
	var created struct{ ID, Answer string }
	json.Unmarshal(body, &created)
	if err := mb.Accept(created.Answer); err != nil {
		t.Fatal(err)
	}
	if err := mb.WaitConnected(ctx(t)); err != nil {
		t.Fatal(err)
	}
	e.waitConnected()
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() { // 20 ms audio until stopped, as a browser sends it
		defer close(sent)
		start := time.Now()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Until(start.Add(time.Duration(i) * 20 * time.Millisecond))):
			}
			mb.Send(0, uint16(i), uint32(160*i), false, payload("q", i))
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-sent
	}()

	// A quality event for the call, with the echo leg's figures.
	var ev b2bua.Event
	deadline := time.After(15 * time.Second)
	for ev.State != b2bua.StateQuality {
		select {
		case d := <-events:
			if strings.Contains(d, `"call":"`+created.ID+`"`) && strings.Contains(d, `"state":"quality"`) {
				if err := json.Unmarshal([]byte(d), &ev); err != nil {
					t.Fatal(err)
				}
				if len(ev.Media) != 1 || ev.Media[0].Quality == nil || ev.Media[0].Quality.In == nil {
					ev = b2bua.Event{} // the echo may not be measured on the first one
				}
			}
		case <-deadline:
			t.Fatal("no quality event with figures")
		}
	}
	q := ev.Media[0].Quality
	if q.In.Last == nil || q.In.MOS.Avg < 4 || q.In.Loss.Max != 0 || q.Received == 0 || len(q.In.Series) != 0 {
		t.Fatalf("quality event: %+v in %+v", q, q.In)
	}
	if ev.Media[0].Kind != "webrtc" {
		t.Errorf("leg kind %q", ev.Media[0].Kind)
	}

	// Homer gets the leg's quality as RTCP JSON (HEP type 5), correlated
	// with the call (the echo leg has no SIP Call-ID).
	select {
	case d := <-reports:
		var r struct {
			Type   int `json:"type"`
			Blocks []struct {
				PacketsLost int64 `json:"packets_lost"`
			} `json:"report_blocks"`
			Strait struct {
				Direction string
				MOS       float64
			} `json:"strait"`
		}
		if err := json.Unmarshal(d.Payload, &r); err != nil || r.Type != 201 || len(r.Blocks) != 1 || r.Strait.MOS < 1 || d.CallID != created.ID {
			t.Fatalf("HEP quality report %+v (%v): %s, correlation %q", r, err, d.Payload, d.CallID)
		}
		if !d.Src.IsValid() || !d.Dst.IsValid() || d.Src.Addr() != loopback {
			t.Errorf("HEP report addresses %v -> %v", d.Src, d.Dst)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no HEP quality report")
	}

	// The call resource carries the same.
	code, body = api.do("GET", "/v1/calls/"+created.ID, nil)
	var info b2bua.Info
	if err := json.Unmarshal(body, &info); code != 200 || err != nil || len(info.Media) != 1 || info.Media[0].Quality == nil {
		t.Fatalf("GET call: %d %s", code, body)
	}

	// Wait for the browser's own reports on the echoed stream (pion
	// sends one a second), then hang up.
	waitFor(t, "the browser's receiver reports", 10*time.Second, func() bool {
		_, body := api.do("GET", "/v1/calls/"+created.ID, nil)
		var info b2bua.Info
		json.Unmarshal(body, &info)
		return len(info.Media) == 1 && info.Media[0].Quality != nil && info.Media[0].Quality.Out != nil
	})
	close(stop)
	<-sent
	if code, _ := api.do("DELETE", "/v1/calls/"+created.ID, nil); code != 204 {
		t.Fatalf("DELETE: %d", code)
	}
	e.waitSessions(0)

	code, body = api.do("GET", "/v1/cdrs", nil)
	var cdrs struct {
		CDRs []cdr.Record `json:"cdrs"`
	}
	if err := json.Unmarshal(body, &cdrs); code != 200 || err != nil || len(cdrs.CDRs) != 1 || len(cdrs.CDRs[0].Media) != 1 {
		t.Fatalf("CDRs: %d %v %s", code, err, body)
	}
	cq := cdrs.CDRs[0].Media[0].Quality
	if cq == nil || cq.In == nil || cq.Out == nil {
		t.Fatalf("CDR quality %+v", cq)
	}
	if cq.In.Intervals < 1 || len(cq.In.Series) == 0 || len(cq.In.Series) > 64 || cq.In.MOS.Min < 4 || cq.In.MOS.Max > 4.5 ||
		cq.In.Loss.Max != 0 || cq.In.JitterMs.Max > 50 {
		t.Errorf("CDR in: %+v", cq.In)
	}
	if cq.Out.Intervals < 1 || cq.Out.PacketsLost != 0 || cq.Out.MOS.Avg < 4 {
		t.Errorf("CDR out: %+v", cq.Out)
	}
	lines := e.cdrLines()
	if len(lines) != 1 || !strings.Contains(lines[0], `"quality":{"in":{"intervals":`) {
		t.Fatalf("CDR file: %q", lines)
	}
	t.Logf("CDR: %s", lines[0])

	code, body = api.do("GET", "/metrics", nil)
	if code != 200 || !strings.Contains(string(body), `strait_media_mos_count{direction="in",leg="webrtc"}`) ||
		strings.Contains(string(body), `strait_media_mos_count{direction="in",leg="webrtc"} 0`) {
		t.Errorf("metrics: no MOS observed for the browser leg\n%s", grepLines(string(body), "strait_media"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
