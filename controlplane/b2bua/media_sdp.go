package b2bua

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/strait-sbc/strait/controlplane/sdp"
)

// localWebRTC is Strait's side of WebRTC leg i from the session.
func (m *media) localWebRTC(i int) (sdp.LocalWebRTC, error) {
	leg := m.sess.GetLegs()[i]
	if len(leg.GetStreams()) == 0 {
		return sdp.LocalWebRTC{}, errors.New("leg has no stream")
	}
	a, err := netip.ParseAddrPort(leg.GetStreams()[0].GetLocalAddr())
	if err != nil {
		return sdp.LocalWebRTC{}, fmt.Errorf("dataplane local address: %w", err)
	}
	fp := leg.GetLocalFingerprint()
	return sdp.LocalWebRTC{Ufrag: leg.GetLocalUfrag(), Pwd: leg.GetLocalPwd(),
		Fingerprint: sdp.Fingerprint{Algorithm: fp.GetAlgorithm(), Value: fp.GetValue()},
		Addresses:   []netip.AddrPort{a}, Role: m.legs[i].role}, nil
}

// localPlain is Strait's side of plain leg i's streams; secure marks the
// streams that carry an SDES key (offer: Strait's own; answer: the node's).
func (m *media) localPlain(i int, answer bool) []sdp.LocalPlain {
	leg := m.sess.GetLegs()[i]
	l := m.legs[i]
	out := make([]sdp.LocalPlain, len(leg.GetStreams()))
	for j, st := range leg.GetStreams() {
		rtp, _ := netip.ParseAddrPort(st.GetLocalAddr())
		rtcp, _ := netip.ParseAddrPort(st.GetLocalRtcpAddr())
		out[j] = sdp.LocalPlain{RTP: rtp, RTCP: rtcp}
		switch {
		case answer && j < len(l.sdesRemote) && l.sdesRemote[j] != nil:
			out[j].Crypto = &sdp.Crypto{Suite: l.sdesSuite[j], Key: st.GetSdesLocalKey()}
		case !answer && l.sdes:
			if l.sdesLocal[j] == nil {
				k := make([]byte, 30)
				rand.Read(k)
				l.sdesLocal[j] = k
				l.sdesSuite[j] = sdp.DefaultCryptoSuite
			}
			out[j].Crypto = &sdp.Crypto{Suite: l.sdesSuite[j], Key: l.sdesLocal[j]}
		}
	}
	return out
}

// withSSRC sets each stream's SSRC to the node's sending SSRC on leg i.
func (m *media) withSSRC(i int, streams []sdp.Stream) []sdp.Stream {
	out := slices.Clone(streams)
	legs := m.sess.GetLegs()
	for j := range out {
		if j < len(legs[i].GetStreams()) {
			out[j].SSRC = legs[i].GetStreams()[j].GetLocalSsrc()
		}
	}
	return out
}

// buildOffer writes Strait's offer on leg i from streams; the session
// exists.
func (m *media) buildOffer(i int, streams []sdp.Stream) (*sdp.Description, error) {
	l := m.legs[i]
	if l.kind == kindWebRTC {
		local, err := m.localWebRTC(i)
		if err != nil {
			return nil, err
		}
		d, err := sdp.WebRTCOffer(&l.origin, m.withSSRC(i, streams), local)
		if err != nil {
			return nil, err
		}
		return d, nil
	}
	d, err := sdp.PlainOffer(&l.origin, streams, m.localPlain(i, false))
	if err != nil {
		return nil, err
	}
	// A plain peer is not shown the streams it never asked for and
	// Strait rejected (a browser's video toward a trunk without video
	// codecs): trailing ones are left out, as far as RFC 3264 allows.
	sdp.TrimRejected(d, l.mlines)
	l.mlines = max(l.mlines, len(d.Media))
	return d, nil
}

// buildAnswer writes Strait's answer on leg i to offer. lines is how many
// m-lines the offer had as received: the sections PadOffer added are left
// out again (RFC 3264 section 6: as many as the offer).
func (m *media) buildAnswer(i int, offer *sdp.Description, streams []sdp.Stream, lines int) ([]byte, error) {
	l := m.legs[i]
	var d *sdp.Description
	var err error
	if l.kind == kindWebRTC {
		local, lerr := m.localWebRTC(i)
		if lerr != nil {
			return nil, lerr
		}
		d, err = sdp.WebRTCAnswer(&l.origin, offer, m.withSSRC(i, streams), local)
	} else {
		d, err = sdp.PlainAnswer(&l.origin, offer, streams, m.localPlain(i, true))
	}
	if err != nil {
		return nil, err
	}
	if lines > 0 && len(d.Media) > lines {
		d.Media = d.Media[:lines]
	}
	return d.Marshal()
}

// adopt records d as leg i's remote description: DTLS role and SDES keys.
// answer says whether d answers Strait's offer.
func (m *media) adopt(i int, d *sdp.Description, answer bool) error {
	l := m.legs[i]
	l.grow(len(d.Media))
	if l.kind == kindWebRTC {
		r, err := d.RemoteWebRTC()
		if err != nil {
			return err
		}
		if answer {
			role, err := sdp.DTLSRoleFromAnswer(r.Setup)
			if err != nil {
				return err
			}
			l.role = role
		} else {
			l.role = sdp.DTLSRoleForOffer(r.Setup, l.role)
		}
	} else {
		for j := range d.Media {
			l.sdesRemote[j] = nil
			if c, ok := sdp.SelectCrypto(d.Media[j].Crypto); ok && !d.Media[j].Rejected() {
				if answer && l.sdesLocal[j] != nil && c.Suite != l.sdesSuite[j] {
					return sipError(488, "", fmt.Errorf("answer chose SDES suite %s, offered %s", c.Suite, l.sdesSuite[j]))
				}
				if !answer {
					l.sdesSuite[j], l.sdesLocal[j] = c.Suite, nil // the node makes our key
				}
				l.sdesRemote[j] = c.Key
			}
		}
	}
	l.remote = d
	return nil
}
