package relay

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// portOwner finds the process holding a UDP address: the inodes of the
// sockets bound to it (or to the wildcard address on its port) from
// /proc/net/udp and udp6, then the process with one of those sockets
// among its descriptors. ok is false when /proc does not tell (another
// user's process without privileges).
func portOwner(a netip.AddrPort) (pid int, name string, ok bool) {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		file, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(file)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 {
				continue
			}
			if local, ok := procAddr(fields[1]); ok && local.Port() == a.Port() &&
				(local.Addr().Unmap() == a.Addr().Unmap() || local.Addr().IsUnspecified()) {
				inodes[fields[9]] = true
			}
		}
		file.Close()
	}
	if len(inodes) == 0 {
		return 0, "", false
	}
	self := os.Getpid()
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		id, err := strconv.Atoi(filepath.Base(p))
		if err != nil || id == self {
			continue
		}
		fds, err := os.ReadDir(filepath.Join(p, "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			l, err := os.Readlink(filepath.Join(p, "fd", fd.Name()))
			if err != nil || !strings.HasPrefix(l, "socket:[") {
				continue
			}
			if inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] {
				comm, _ := os.ReadFile(filepath.Join(p, "comm"))
				return id, strings.TrimSpace(string(comm)), true
			}
		}
	}
	return 0, "", false
}

// procAddr parses a /proc/net/udp{,6} address, "0100007F:1F90": the
// address as 32-bit words each printed in host byte order, then the port.
func procAddr(s string) (netip.AddrPort, bool) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return netip.AddrPort{}, false
	}
	port, err := strconv.ParseUint(s[i+1:], 16, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	raw, err := hex.DecodeString(s[:i])
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, false
	}
	b := make([]byte, len(raw))
	for w := 0; w < len(raw); w += 4 {
		binary.NativeEndian.PutUint32(b[w:], binary.BigEndian.Uint32(raw[w:]))
	}
	addr, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(addr, uint16(port)), true
}
