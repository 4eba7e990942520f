package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/strait-sbc/strait/controlplane/b2bua"
	"github.com/strait-sbc/strait/controlplane/state"
)

// API requests for calls another control plane holds (GET /v1/calls,
// GET and DELETE /v1/calls/{id}, DTMF) go to it over the store's
// publish/subscribe (Redis pub/sub): each member listens on its own
// channel, "cluster/ID"; a request names the channel to answer on. No
// address or port of a peer is needed (the members only share the
// store, which already trusts them with every call and registration: a
// client that can publish on it can write calls too, so the channel adds
// no new trust), and a dead peer simply does not answer within
// peerTimeout. Only the members with a live lease are asked.

// Bounds of a request to the other members: a live peer answers a list
// or a lookup within milliseconds (listTimeout also bounds how long a
// peer going down, still leased but no longer serving, delays a list); a
// hang-up waits for the call's end there (its BYEs), DTMF for the INFOs.
const (
	listTimeout = 2 * time.Second
	peerTimeout = 10 * time.Second
)

// maxServing bounds the requests from peers served at once (each may wait
// for a call's hang-up).
const maxServing = 64

// Operations of a peer request, also the metric's op label.
const (
	opList   = "list"
	opGet    = "get"
	opHangup = "hangup"
	opDTMF   = "dtmf"
)

type peerRequest struct {
	ID     string `json:"id"`
	From   string `json:"from"`
	Op     string `json:"op"`
	Call   string `json:"call,omitempty"`
	Digits string `json:"digits,omitempty"`
}

type peerReply struct {
	Reply string       `json:"reply"` // the request's ID
	Found bool         `json:"found,omitempty"`
	Calls []b2bua.Info `json:"calls,omitempty"`
	Code  int          `json:"code,omitempty"` // a failure's SIP status
	Error string       `json:"error,omitempty"`
}

// PeersConfig configures Peers.
type PeersConfig struct {
	// Member is this control plane's membership; Engine its calls.
	Member *Member
	Engine *b2bua.Engine
	// OnRequest, when set, counts each request sent to the peers by
	// operation and result (ok, not_found, error).
	OnRequest func(op, result string)
	// Log is the logger; nil is slog.Default().
	Log *slog.Logger
}

// Peers asks the other members about their calls and answers theirs. It
// is safe for concurrent use.
type Peers struct {
	// Frozen after NewPeers.
	cfg    PeersConfig
	log    *slog.Logger
	st     state.Store
	cancel context.CancelFunc
	wg     sync.WaitGroup
	sem    chan struct{} // bounds serving

	mu      sync.Mutex // guards pending
	pending map[string]chan peerReply
}

// ErrNotFound is returned when no member holds the call.
var ErrNotFound = errors.New("cluster: no control plane holds the call")

// NewPeers subscribes to this member's channel and serves it until Close.
func NewPeers(ctx context.Context, cfg PeersConfig) (*Peers, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	sctx, cancel := context.WithCancel(context.Background())
	p := &Peers{cfg: cfg, log: cfg.Log, st: cfg.Member.cfg.Store, cancel: cancel, sem: make(chan struct{}, maxServing),
		pending: map[string]chan peerReply{}}
	in, err := p.st.Subscribe(sctx, channelOf(cfg.Member.ID()))
	if err != nil {
		cancel()
		return nil, err
	}
	p.wg.Add(1)
	go p.serve(sctx, in)
	return p, nil
}

func channelOf(id string) string { return "cluster/" + id }

// Close stops serving and waits for the requests being served.
func (p *Peers) Close() {
	p.cancel()
	p.wg.Wait()
}

func (p *Peers) serve(ctx context.Context, in <-chan []byte) {
	defer p.wg.Done()
	for msg := range in {
		var probe struct {
			Reply string `json:"reply"`
		}
		if json.Unmarshal(msg, &probe) != nil {
			continue
		}
		if probe.Reply != "" {
			var rep peerReply
			if json.Unmarshal(msg, &rep) != nil {
				continue
			}
			p.mu.Lock()
			ch := p.pending[rep.Reply]
			p.mu.Unlock()
			if ch != nil {
				select {
				case ch <- rep:
				default:
				}
			}
			continue
		}
		var req peerRequest
		if json.Unmarshal(msg, &req) != nil || req.ID == "" || CheckID(req.From) != nil {
			continue
		}
		select {
		case p.sem <- struct{}{}:
		default:
			p.log.Warn("cluster: too many requests from peers; one dropped", "op", req.Op, "from", req.From)
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer func() { <-p.sem }()
			rep := p.answer(ctx, &req)
			rep.Reply = req.ID
			b, _ := json.Marshal(rep)
			pctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			defer cancel()
			if err := p.st.Publish(pctx, channelOf(req.From), b); err != nil {
				p.log.Warn("cluster: reply to a peer not sent", "to", req.From, "err", err)
			}
		}()
	}
}

// answer serves one request from a peer about this process's calls.
func (p *Peers) answer(ctx context.Context, req *peerRequest) peerReply {
	e := p.cfg.Engine
	if req.Op == opList {
		return peerReply{Found: true, Calls: e.Calls()}
	}
	c, ok := e.Call(req.Call)
	if !ok {
		return peerReply{}
	}
	rep := peerReply{Found: true, Calls: []b2bua.Info{c.Info()}}
	switch req.Op {
	case opHangup:
		c.Hangup(200, "api hangup")
	case opDTMF:
		dctx, cancel := context.WithTimeout(ctx, peerTimeout)
		defer cancel()
		if err := c.SendDTMF(dctx, req.Digits); err != nil {
			rep.Code, rep.Error = 500, err.Error()
			var be *b2bua.Error
			if errors.As(err, &be) {
				rep.Code = be.Status
			}
		}
	}
	return rep
}

// ask sends req to every other live member and returns their replies
// (those that came within listTimeout or peerTimeout, or ctx); first, when set, stops at
// the first reply that found the call.
func (p *Peers) ask(ctx context.Context, req peerRequest, first bool) ([]peerReply, error) {
	m := p.cfg.Member
	live, err := m.Live(ctx)
	if err != nil {
		return nil, err
	}
	var peers []string
	for _, id := range live {
		if id != m.ID() {
			peers = append(peers, id)
		}
	}
	if len(peers) == 0 {
		return nil, nil
	}
	b := make([]byte, 8)
	rand.Read(b)
	req.ID, req.From = hex.EncodeToString(b), m.ID()
	ch := make(chan peerReply, len(peers))
	p.mu.Lock()
	p.pending[req.ID] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.pending, req.ID)
		p.mu.Unlock()
	}()
	msg, _ := json.Marshal(req)
	for _, id := range peers {
		if err := p.st.Publish(ctx, channelOf(id), msg); err != nil {
			return nil, err
		}
	}
	bound := peerTimeout
	if req.Op == opList || req.Op == opGet {
		bound = listTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	var out []peerReply
	for len(out) < len(peers) {
		select {
		case rep := <-ch:
			out = append(out, rep)
			if first && rep.Found {
				return out, nil
			}
		case <-ctx.Done():
			return out, nil
		}
	}
	return out, nil
}

// count reports a request's result to OnRequest.
func (p *Peers) count(op string, err error) {
	if p.cfg.OnRequest == nil {
		return
	}
	switch {
	case err == nil:
		p.cfg.OnRequest(op, "ok")
	case errors.Is(err, ErrNotFound):
		p.cfg.OnRequest(op, "not_found")
	default:
		p.cfg.OnRequest(op, "error")
	}
}

// Calls returns the calls the other live members hold.
func (p *Peers) Calls(ctx context.Context) ([]b2bua.Info, error) {
	reps, err := p.ask(ctx, peerRequest{Op: opList}, false)
	p.count(opList, err)
	var out []b2bua.Info
	for _, r := range reps {
		out = append(out, r.Calls...)
	}
	return out, err
}

// Call returns a call another member holds.
func (p *Peers) Call(ctx context.Context, id string) (b2bua.Info, error) {
	rep, err := p.one(ctx, peerRequest{Op: opGet, Call: id})
	if err != nil {
		return b2bua.Info{}, err
	}
	return rep.Calls[0], nil
}

// Hangup hangs up a call another member holds, and returns once it
// ended there.
func (p *Peers) Hangup(ctx context.Context, id string) error {
	_, err := p.one(ctx, peerRequest{Op: opHangup, Call: id})
	return err
}

// SendDTMF sends digits in a call another member holds (b2bua's
// Call.SendDTMF there); its failure comes back as a *b2bua.Error.
func (p *Peers) SendDTMF(ctx context.Context, id, digits string) error {
	_, err := p.one(ctx, peerRequest{Op: opDTMF, Call: id, Digits: digits})
	return err
}

// one asks about one call: the reply of the member that holds it.
func (p *Peers) one(ctx context.Context, req peerRequest) (peerReply, error) {
	reps, err := p.ask(ctx, req, true)
	for _, r := range reps {
		if r.Found && len(r.Calls) == 1 {
			if r.Code != 0 {
				err = &b2bua.Error{Status: r.Code, Err: errors.New(r.Error)}
				p.count(req.Op, err)
				return r, err
			}
			p.count(req.Op, nil)
			return r, nil
		}
	}
	if err == nil {
		err = ErrNotFound
	}
	p.count(req.Op, err)
	return peerReply{}, err
}
