package callrate

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// What strait itself takes to answer, seen on the wire: sipp's response
// times are its own loop's (one thread, millisecond clock, the same two
// CPUs), so a late response in sipp's figures may be sipp's late read.
// dumpcap (Wireshark's capture tool) records strait's SIP port on the
// loopback with the kernel's timestamps; every INVITE's and BYE's time to
// strait's 200 is read from the capture after the run.

// wireCapture is a dumpcap capturing one UDP port on the loopback.
type wireCapture struct {
	cmd  *exec.Cmd
	path string
}

// startCapture starts dumpcap on lo for UDP port port, writing classic
// pcap into dir; it returns once dumpcap says it is capturing.
func startCapture(ctx context.Context, dir string, port int, log io.Writer) (*wireCapture, error) {
	bin, err := exec.LookPath("dumpcap")
	if err != nil {
		return nil, fmt.Errorf("dumpcap not found (apt install wireshark-common): %w", err)
	}
	path := filepath.Join(dir, "sip.pcap")
	cmd := exec.CommandContext(ctx, bin, "-i", "lo", "-f", fmt.Sprintf("udp port %d", port), "-P", "-B", "64", "-w", path)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		said := false
		for sc.Scan() {
			fmt.Fprintln(log, "dumpcap:", sc.Text())
			if !said && strings.HasPrefix(sc.Text(), "Capturing on") {
				said = true
				ready <- nil
			}
		}
		if !said {
			ready <- errors.New("dumpcap exited before capturing")
		}
	}()
	select {
	case err := <-ready:
		if err != nil {
			cmd.Wait()
			return nil, err
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		return nil, errors.New("dumpcap did not start capturing in 10 s")
	}
	// dumpcap says so as it opens the interface; give it a moment to be
	// reading before the first call.
	time.Sleep(300 * time.Millisecond)
	return &wireCapture{cmd: cmd, path: path}, nil
}

// stop ends the capture (SIGINT lets dumpcap flush) and reads it.
func (w *wireCapture) stop(port int) (wireTimes, error) {
	time.Sleep(300 * time.Millisecond) // the last answers reach the capture's buffer
	w.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { w.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		w.cmd.Process.Kill()
		<-done
	}
	f, err := os.Open(w.path)
	if err != nil {
		return wireTimes{}, err
	}
	defer f.Close()
	return readWire(bufio.NewReaderSize(f, 1<<20), port)
}

// wireTimes are strait's answer times in milliseconds, one per request.
type wireTimes struct {
	invite, bye []float64
	// firstInvite is the INVITE to strait's first response (100, 180 or
	// 200), what stops the caller's retransmissions.
	firstInvite []float64
}

// readWire pairs requests to port with strait's answers from it in a
// classic pcap of Ethernet (Linux's loopback) or raw IPv4 frames.
func readWire(r io.Reader, port int) (wireTimes, error) {
	var hdr [24]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return wireTimes{}, fmt.Errorf("pcap header: %w", err)
	}
	var bo binary.ByteOrder
	nano := false
	switch binary.LittleEndian.Uint32(hdr[:4]) {
	case 0xa1b2c3d4:
		bo = binary.LittleEndian
	case 0xa1b23c4d:
		bo, nano = binary.LittleEndian, true
	default:
		switch binary.BigEndian.Uint32(hdr[:4]) {
		case 0xa1b2c3d4:
			bo = binary.BigEndian
		case 0xa1b23c4d:
			bo, nano = binary.BigEndian, true
		default:
			return wireTimes{}, errors.New("not a classic pcap file")
		}
	}
	link := bo.Uint32(hdr[20:24])
	type key struct {
		callID string
		method string
	}
	sent := map[key]time.Time{}   // request in, first seen
	answered := map[key]bool{}    // a final 200 already paired
	provisional := map[key]bool{} // a first response already paired
	var out wireTimes
	var rec [16]byte
	buf := make([]byte, 0, 65536)
	for {
		if _, err := io.ReadFull(r, rec[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return out, nil // dumpcap's last record may be cut
			}
			return out, err
		}
		sec, frac := bo.Uint32(rec[0:4]), bo.Uint32(rec[4:8])
		n := int(bo.Uint32(rec[8:12]))
		if n > 1<<18 {
			return out, errors.New("pcap record too long")
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return out, nil
		}
		if !nano {
			frac *= 1000
		}
		at := time.Unix(int64(sec), int64(frac))
		payload, dport, sport, ok := udpPayload(buf, link)
		if !ok {
			continue
		}
		first, callID, cseqMethod := sipSummary(payload)
		if callID == "" {
			continue
		}
		k := key{callID, cseqMethod}
		switch {
		case dport == port && !strings.HasPrefix(first, "SIP/2.0"):
			// A request to strait; a retransmission keeps the first time.
			if _, seen := sent[k]; !seen && (cseqMethod == "INVITE" || cseqMethod == "BYE") {
				sent[k] = at
			}
		case sport == port && strings.HasPrefix(first, "SIP/2.0 "):
			t0, ok := sent[k]
			if !ok {
				continue
			}
			ms := float64(at.Sub(t0)) / float64(time.Millisecond)
			if cseqMethod == "INVITE" && !provisional[k] {
				provisional[k] = true
				out.firstInvite = append(out.firstInvite, ms)
			}
			if strings.HasPrefix(first, "SIP/2.0 200") && !answered[k] {
				answered[k] = true
				switch cseqMethod {
				case "INVITE":
					out.invite = append(out.invite, ms)
				case "BYE":
					out.bye = append(out.bye, ms)
				}
			}
		}
	}
}

// udpPayload finds a UDP datagram in a captured frame (link type 1,
// Ethernet, as Linux captures its loopback; or 101/228, raw IPv4).
func udpPayload(b []byte, link uint32) (payload []byte, dport, sport int, ok bool) {
	switch link {
	case 1:
		if len(b) < 14 || b[12] != 0x08 || b[13] != 0x00 {
			return nil, 0, 0, false
		}
		b = b[14:]
	case 101, 228:
	default:
		return nil, 0, 0, false
	}
	if len(b) < 20 || b[0]>>4 != 4 || b[9] != 17 {
		return nil, 0, 0, false
	}
	ihl := int(b[0]&0x0f) * 4
	if len(b) < ihl+8 || binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 {
		return nil, 0, 0, false // a fragment past the first has no UDP header
	}
	u := b[ihl:]
	return u[8:], int(binary.BigEndian.Uint16(u[2:4])), int(binary.BigEndian.Uint16(u[0:2])), true
}

// sipSummary is a SIP message's first line, Call-ID and CSeq method.
func sipSummary(m []byte) (first, callID, cseqMethod string) {
	line, rest, _ := bytes.Cut(m, []byte("\n"))
	first = string(bytes.TrimSpace(line))
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			break
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		if !found {
			continue
		}
		name = bytes.TrimSpace(name)
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Call-ID")) || bytes.Equal(name, []byte("i")):
			callID = string(value)
		case bytes.EqualFold(name, []byte("CSeq")):
			if f := bytes.Fields(value); len(f) == 2 {
				cseqMethod = string(f[1])
			}
		}
	}
	return first, callID, cseqMethod
}
