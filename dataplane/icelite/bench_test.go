package icelite

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/pion/stun/v4"
)

var benchSrc = netip.MustParseAddrPort("203.0.113.9:50000")

// BenchmarkAnswer is the per-check work of a packet worker: parse, verify,
// append the response.
func BenchmarkAnswer(b *testing.B) {
	pkt := pionRequest(b, pionPassword, true).Raw
	key := mustKey(b, pionPassword)
	out := make([]byte, 0, MaxResponseSize)
	var (
		x Responder
		r Request
	)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		if err := ParseRequest(pkt, &r); err != nil {
			b.Fatal(err)
		}
		if !x.Verify(pkt, &r, key) {
			b.Fatal("rejected")
		}
		out, _ = x.AppendSuccess(out[:0], &r, benchSrc, key)
	}
}

// pionAnswer does what BenchmarkAnswer does with pion/stun, the way that
// avoids stun.Build: decode into a reused Message, check FINGERPRINT and
// MESSAGE-INTEGRITY, and build the response into a reused Message. The
// request is copied into a 1500-byte Raw, unless alias is set, in which case
// Raw is the datagram itself.
type pionAnswer struct {
	req, resp stun.Message
	integ     stun.MessageIntegrity
	xma       stun.XORMappedAddress
	alias     bool
}

func newPionAnswer(pwd string) *pionAnswer {
	p := &pionAnswer{integ: stun.NewShortTermIntegrity(pwd)}
	p.req.Raw = make([]byte, 0, 1500)
	p.resp.Raw = make([]byte, 0, 1500)
	p.xma.IP = make(net.IP, net.IPv4len)
	return p
}

// answer returns the response, which aliases p.resp.Raw.
func (p *pionAnswer) answer(pkt []byte, src netip.AddrPort) ([]byte, bool) {
	if p.alias {
		p.req.Raw = pkt
	} else {
		p.req.Raw = append(p.req.Raw[:0], pkt...)
	}
	if p.req.Decode() != nil || p.req.Type != stun.BindingRequest {
		return nil, false
	}
	u, err := p.req.Get(stun.AttrUsername)
	if err != nil || bytes.IndexByte(u, ':') <= 0 {
		return nil, false
	}
	if stun.Fingerprint.Check(&p.req) != nil || p.integ.Check(&p.req) != nil {
		return nil, false
	}
	_ = p.req.Contains(stun.AttrUseCandidate)

	p.resp.Reset()
	p.resp.Type = stun.BindingSuccess
	p.resp.TransactionID = p.req.TransactionID
	p.resp.WriteHeader()
	a4 := src.Addr().As4()
	copy(p.xma.IP, a4[:])
	p.xma.Port = int(src.Port())
	if p.xma.AddTo(&p.resp) != nil || p.integ.AddTo(&p.resp) != nil || stun.Fingerprint.AddTo(&p.resp) != nil {
		return nil, false
	}
	return p.resp.Raw, true
}

// BenchmarkPionStunAnswer is BenchmarkAnswer done with pion/stun, for
// comparison in the same run: copy is the datagram copied into a Raw with
// spare capacity, alias is Raw set to an exact-size datagram (as a
// zero-copy worker would, given the datagram's length).
func BenchmarkPionStunAnswer(b *testing.B) {
	for _, alias := range []bool{false, true} {
		name := "copy"
		if alias {
			name = "alias"
		}
		b.Run(name, func(b *testing.B) {
			pkt := pionRequest(b, pionPassword, true).Raw
			pkt = pkt[:len(pkt):len(pkt)]
			p := newPionAnswer(pionPassword)
			p.alias = alias
			b.SetBytes(int64(len(pkt)))
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := p.answer(pkt, benchSrc); !ok {
					b.Fatal("rejected")
				}
			}
		})
	}
}

func BenchmarkParseRequest(b *testing.B) {
	pkt := pionRequest(b, pionPassword, true).Raw
	var r Request
	b.ReportAllocs()
	for b.Loop() {
		if err := ParseRequest(pkt, &r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify also stands for a check with the wrong password, which
// costs the same and is dropped.
func BenchmarkVerify(b *testing.B) {
	pkt := pionRequest(b, pionPassword, true).Raw
	key := mustKey(b, pionPassword)
	r := mustParse(b, pkt)
	var x Responder
	b.ReportAllocs()
	for b.Loop() {
		if !x.Verify(pkt, r, key) {
			b.Fatal("rejected")
		}
	}
}

func BenchmarkAppendSuccess(b *testing.B) {
	pkt := pionRequest(b, pionPassword, true).Raw
	key := mustKey(b, pionPassword)
	r := mustParse(b, pkt)
	out := make([]byte, 0, MaxResponseSize)
	var x Responder
	b.ReportAllocs()
	for b.Loop() {
		out, _ = x.AppendSuccess(out[:0], r, benchSrc, key)
	}
}

// BenchmarkNewKey is the per-leg setup Key saves from every MAC: hashing
// the two pad blocks (plus NewKey's own allocations).
func BenchmarkNewKey(b *testing.B) {
	pwd := []byte(pionPassword)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewKey(pwd); err != nil {
			b.Fatal(err)
		}
	}
}
