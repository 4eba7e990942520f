package rtpengine

import "testing"

// Lines as rtpengine 10.5 writes them (--log-stderr), split across writes.
func TestStrikeLog(t *testing.T) {
	var s strikeLog
	in := "[1796682588.792490] ERR: [bench-2-1-688 port 29586]: [core] Too many packets in UDP receive queue (more than 50), aborting loop. Dropped packets possible\n" +
		"[1796682588.792491] ERR: [bench-2-1-688 port 29586]: [core] Too many packets in UDP receive queue (more than 50), aborting loop. Dropped packets possible\n" +
		"[1796682588.792826] ERR: [bench-2-1-689 port 29614]: [core] Too many packets in UDP receive queue (more than 50), aborting loop. Dropped packets possible\n" +
		"[1796682600.696848] ERR: [bench-2-1-731 port 30758]: [core] UDP receive queue exceeded 5 times: discarding packet\n" +
		"[1796682575.076090] ERR: [bench-2-1-32 port 10880]: [core] SRTP output wanted, but no crypto suite was negotiated\n" +
		"[1796682600.696849] ERR: [bench-2-1-731 port 30759]: [core] UDP receive queue exceeded 5 times: disc"
	for i := 0; i < len(in); i += 37 {
		s.Write([]byte(in[i:min(i+37, len(in))]))
	}
	if struck, dead := s.take(); struck != 2 || dead != 1 {
		t.Fatalf("struck %d, abandoned %d: want 2 and 1 (the last line is not complete yet)", struck, dead)
	}
	s.Write([]byte("arding packet\n"))
	if struck, dead := s.take(); struck != 0 || dead != 1 {
		t.Fatalf("after take: struck %d, abandoned %d: want 0 and 1", struck, dead)
	}
}
