package relay

import (
	"bufio"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// portOwner finds the process holding a UDP port: the socket's inode
// from /proc/net/udp (udp6), then the process with that socket among its
// descriptors. ok is false when /proc does not tell (another user's
// process without privileges).
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
			local := fields[1] // HEXADDR:HEXPORT
			i := strings.LastIndexByte(local, ':')
			if i < 0 {
				continue
			}
			if p, err := strconv.ParseUint(local[i+1:], 16, 16); err == nil && uint16(p) == a.Port() {
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
