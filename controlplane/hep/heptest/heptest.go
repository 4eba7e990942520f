// Package heptest is a HEP3 receiver for tests: a decoder written from the
// HEP3 specification (HEP3_Network_Protocol_Specification_REV_36),
// independently of package hep's encoder, so that a test of one checks
// the other against the specification.
package heptest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Decoded is a HEP3 packet as the specification describes it, decoded
// independently of Append: "HEP3", a 16-bit total length, then chunks of
// vendor id (16 bits), type id (16 bits), length (16 bits, header
// included) and payload, all in network byte order.
type Decoded struct {
	Family, Proto, ProtoType uint8
	Src, Dst                 netip.AddrPort
	Sec, Usec, CaptureID     uint32
	AuthKey, CallID          string
	Payload                  []byte
}

// Decode parses one HEP3 packet.
func Decode(b []byte) (*Decoded, error) {
	if len(b) < 6 || string(b[:4]) != "HEP3" {
		return nil, errors.New("not HEP3")
	}
	if n := int(binary.BigEndian.Uint16(b[4:])); n != len(b) {
		return nil, fmt.Errorf("total length %d, packet %d", n, len(b))
	}
	d := &Decoded{}
	var srcIP, dstIP netip.Addr
	var srcPort, dstPort uint16
	for b = b[6:]; len(b) > 0; {
		if len(b) < 6 {
			return nil, errors.New("truncated chunk header")
		}
		vendor, typ, n := binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:]), int(binary.BigEndian.Uint16(b[4:]))
		if n < 6 || n > len(b) {
			return nil, fmt.Errorf("chunk %#x length %d of %d", typ, n, len(b))
		}
		v := b[6:n]
		b = b[n:]
		if vendor != 0 {
			continue
		}
		switch typ {
		case 1:
			d.Family = v[0]
		case 2:
			d.Proto = v[0]
		case 3:
			srcIP = netip.AddrFrom4([4]byte(v))
		case 4:
			dstIP = netip.AddrFrom4([4]byte(v))
		case 5:
			srcIP = netip.AddrFrom16([16]byte(v))
		case 6:
			dstIP = netip.AddrFrom16([16]byte(v))
		case 7:
			srcPort = binary.BigEndian.Uint16(v)
		case 8:
			dstPort = binary.BigEndian.Uint16(v)
		case 9:
			d.Sec = binary.BigEndian.Uint32(v)
		case 10:
			d.Usec = binary.BigEndian.Uint32(v)
		case 11:
			d.ProtoType = v[0]
		case 12:
			d.CaptureID = binary.BigEndian.Uint32(v)
		case 14:
			d.AuthKey = string(v)
		case 15:
			d.Payload = v
		case 17:
			d.CallID = string(v)
		}
	}
	d.Src, d.Dst = netip.AddrPortFrom(srcIP, srcPort), netip.AddrPortFrom(dstIP, dstPort)
	return d, nil
}
