package b2bua

import (
	"context"
	"errors"

	"github.com/strait-sbc/strait/controlplane/sdp"
)

// offer passes a peer's offer from leg from to the other leg and returns
// Strait's offer for it. The session is created by the first offer.
func (m *media) offer(ctx context.Context, from int, d *sdp.Description) ([]byte, error) {
	if m.closed {
		return nil, errClosed
	}
	to := 1 - from
	tl := m.legs[to]
	m.legs[from].mlines = max(m.legs[from].mlines, len(d.Media))
	lines := len(d.Media)
	// A plain peer re-offers only the m-lines Strait showed it; the other
	// leg keeps the ones it negotiated, rejected.
	d = sdp.PadOffer(d, tl.remote)
	streams, err := sdp.OfferStreams(d, tl.policy)
	if err != nil {
		return nil, err
	}
	ex := &exchange{from: from, offer: d, lines: lines, streams: streams}
	if fl := m.legs[from]; m.sess != nil && fl.kind == kindWebRTC && fl.remote != nil {
		ex.restart = sdp.ICERestart(fl.remote, d)
	}
	if m.sess == nil {
		if err := m.adopt(from, d, false); err != nil {
			return nil, err
		}
		for _, l := range m.legs {
			l.grow(len(streams))
			for j, s := range streams {
				l.codecs[j] = s.Codecs
			}
		}
		if err := m.create(ctx); err != nil {
			return nil, err
		}
	} else if len(streams) > len(tl.codecs) {
		// New m-lines: the session grows its streams first.
		for _, l := range m.legs {
			l.grow(len(streams))
		}
		for j := len(tl.codecs); j < len(streams); j++ {
			for _, l := range m.legs {
				l.codecs[j] = streams[j].Codecs
			}
		}
		if err := m.update(ctx, nil); err != nil {
			return nil, err
		}
	}
	out, err := m.buildOffer(to, streams)
	if err != nil {
		return nil, err
	}
	ex.streams = streams
	if tl.kind == kindWebRTC {
		// WebRTCOffer may renumber payload types across the bundle.
		for j := range ex.streams {
			if j < len(out.Media) && !streams[j].Rejected {
				ex.streams[j].Codecs = out.Media[j].Codecs
			}
		}
	}
	m.pend = ex
	return out.Marshal()
}

// offerFresh makes an offer on leg to without one to start from (the
// INVITE on the other leg had no SDP).
func (m *media) offerFresh(ctx context.Context, to int) ([]byte, error) {
	if m.closed {
		return nil, errClosed
	}
	var names []string
	other := m.legs[1-to].policy
	for _, n := range m.legs[to].policy.Codecs {
		if other.Allows(n) {
			names = append(names, n)
		}
	}
	streams := []sdp.Stream{sdp.Policy{Codecs: names}.NewStream(sdp.KindAudio)}
	if streams[0].Rejected {
		return nil, sipError(488, "", errors.New("the legs' codec lists have nothing in common"))
	}
	for _, l := range m.legs {
		l.grow(1)
		l.codecs[0] = streams[0].Codecs
	}
	if m.sess == nil {
		if err := m.create(ctx); err != nil {
			return nil, err
		}
	}
	out, err := m.buildOffer(to, streams)
	if err != nil {
		return nil, err
	}
	if m.legs[to].kind == kindWebRTC {
		streams[0].Codecs = out.Media[0].Codecs
	}
	m.pend = &exchange{from: -1, streams: streams}
	return out.Marshal()
}

// answer takes the answer leg at gave to the pending offer. It returns
// Strait's answer for the offering leg (nil when that leg already has
// one), or, after a delayed offer, Strait's offer for the other leg with
// needOffer set.
func (m *media) answer(ctx context.Context, at int, d *sdp.Description, raw []byte) (out []byte, needOffer bool, err error) {
	ex := m.pend
	if m.closed {
		return nil, false, errClosed
	}
	if ex == nil {
		return nil, false, sipError(500, "", errors.New("answer without an offer"))
	}
	if ex.answerIn != nil && string(ex.answerIn) == string(raw) {
		return ex.answerOut, false, nil // the 200 repeats the 183's answer
	}
	// An answer that leaves out m-lines (a PBX dropping the m=video 0
	// of the offer, or Strait's own trimmed offer answered as sent)
	// reads them as rejected.
	m.legs[at].mlines = max(m.legs[at].mlines, len(d.Media))
	d = sdp.PadAnswer(d, ex.streams)
	if ex.from == -1 {
		// Delayed offer: this leg answered Strait's own offer; offer the
		// other leg what it chose.
		if len(d.Media) != len(ex.streams) {
			return nil, false, sipError(488, "", errors.New("answer does not match the offer's m-lines"))
		}
		if err := m.adopt(at, d, true); err != nil {
			return nil, false, err
		}
		l := m.legs[at]
		for j := range d.Media {
			_, l.codecs[j] = sdp.SharedCodecs(ex.streams[j].Codecs, d.Media[j].Codecs)
			l.dirs[j] = ex.streams[j].Direction.And(d.Media[j].Direction.Reverse())
		}
		m.pend = nil
		o, err := m.offer(ctx, at, d)
		if err != nil {
			return nil, false, err
		}
		m.pend.silent = true
		return o, true, nil
	}
	from := ex.from
	astreams, err := sdp.AnswerStreams(ex.offer, d)
	if err != nil {
		return nil, false, err
	}
	if !ex.silent {
		if err := m.adopt(from, ex.offer, false); err != nil {
			return nil, false, err
		}
	}
	if err := m.adopt(at, d, true); err != nil {
		return nil, false, err
	}
	fl, tl := m.legs[from], m.legs[at]
	for j := range astreams {
		fl.codecs[j], tl.codecs[j] = nil, nil
		if !astreams[j].Rejected {
			fl.codecs[j], tl.codecs[j] = sdp.SharedCodecs(astreams[j].Codecs, d.Media[j].Codecs)
		}
		fl.dirs[j] = astreams[j].Direction
		tl.dirs[j] = ex.streams[j].Direction.And(d.Media[j].Direction.Reverse())
	}
	restart := make([]bool, len(m.legs))
	restart[from] = ex.restart
	if err := m.update(ctx, restart); err != nil {
		return nil, false, err
	}
	ex.answerIn = raw
	if ex.silent {
		return nil, false, nil
	}
	ans, err := m.buildAnswer(from, ex.offer, astreams, ex.lines)
	if err != nil {
		return nil, false, err
	}
	ex.answerOut = ans
	return ans, false, nil
}

// answerLocally answers the pending offer on behalf of leg at, which has
// no signalling to ask (an API client): as if it answered with its last
// description, keeping its transport as it is.
func (m *media) answerLocally(ctx context.Context, at int) ([]byte, error) {
	ex := m.pend
	if ex == nil || ex.from < 0 || m.closed {
		return nil, sipError(488, "", errors.New("no offer to answer"))
	}
	tl := m.legs[at]
	astreams, err := sdp.AnswerStreams(ex.offer, tl.remote)
	if err != nil {
		return nil, err
	}
	if err := m.adopt(ex.from, ex.offer, false); err != nil {
		return nil, err
	}
	fl := m.legs[ex.from]
	for j := range astreams {
		fl.codecs[j] = nil
		if !astreams[j].Rejected {
			fl.codecs[j], tl.codecs[j] = sdp.SharedCodecs(astreams[j].Codecs, tl.remote.Media[j].Codecs)
		}
		fl.dirs[j] = astreams[j].Direction
		tl.dirs[j] = astreams[j].Direction.Reverse()
	}
	restart := make([]bool, len(m.legs))
	restart[ex.from] = ex.restart
	if err := m.update(ctx, restart); err != nil {
		return nil, err
	}
	m.pend = nil
	return m.buildAnswer(ex.from, ex.offer, astreams, ex.lines)
}

// abandon drops a pending exchange the other leg refused.
func (m *media) abandon() {
	m.pend = nil
}

// echo answers a one-leg session's offer: the dataplane reflects the
// caller's media back to it.
func (m *media) echo(ctx context.Context, d *sdp.Description) ([]byte, error) {
	l := m.legs[0]
	streams, err := sdp.OfferStreams(d, l.policy)
	if err != nil {
		return nil, err
	}
	if err := m.adopt(0, d, false); err != nil {
		return nil, err
	}
	for j := range streams {
		streams[j].Direction = streams[j].Direction.Reverse()
		l.codecs[j] = streams[j].Codecs
		l.dirs[j] = streams[j].Direction
	}
	if err := m.create(ctx); err != nil {
		return nil, err
	}
	return m.buildAnswer(0, d, streams, len(d.Media))
}
