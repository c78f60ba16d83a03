package bench

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// EstablishedTo counts the established TCP connections that the process
// pid (and its living children: nginx's workers) holds to port on any
// address, from /proc/<pid>/fd and /proc/net/tcp{,6}; ok is false where
// those are not readable.
func EstablishedTo(pid, port int) (n int, ok bool) {
	inodes := map[string]bool{}
	pids := append([]int{pid}, childrenOf(pid)...)
	for _, p := range pids {
		fds, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(p), "fd"))
		if err != nil {
			if p == pid {
				return 0, false
			}
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(p), "fd", fd.Name()))
			if err == nil && strings.HasPrefix(link, "socket:[") {
				inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
			}
		}
	}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local_address rem_address st … uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "01" { // 01: ESTABLISHED
				continue
			}
			_, rport, found := strings.Cut(fields[2], ":")
			if p, err := strconv.ParseInt(rport, 16, 32); !found || err != nil || int(p) != port {
				continue
			}
			if inodes[fields[9]] {
				n++
			}
		}
		_ = f.Close()
	}
	return n, true
}
