//go:build linux

package ebpf

import (
	"bufio"
	"errors"
	"io/fs"
	"net"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The test binary has its own markers, named as the gateway's, and a tiny
// line server that calls them as the gateway would: the probe attaches to
// the test binary itself.

//go:noinline
func probeRequestStart(id uint64) { _ = id }

//go:noinline
func probeAuthenticated(id uint64) { _ = id }

//go:noinline
func probeDecided(id uint64) { _ = id }

//go:noinline
func probeForwardStart(id uint64) { _ = id }

//go:noinline
func probeBackendSent(id uint64) { _ = id }

//go:noinline
func probeBackendFirstByte(id uint64) { _ = id }

//go:noinline
func probeBackendDone(id uint64) { _ = id }

//go:noinline
func probeReplyDone(id uint64) { _ = id }

// backendTime is how long the line server's backend takes to answer.
const backendTime = 2 * time.Millisecond

// listenLocal listens on a free port of 127.0.0.1 until the test ends.
func listenLocal(t testing.TB) *net.TCPListener {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// serveBackend answers each line with "ok\n" after delay; with once, it
// closes the connection after its first answer, as a backend that does
// not keep connections alive.
func serveBackend(t testing.TB, delay time.Duration, once bool) *net.TCPListener {
	t.Helper()
	ln := listenLocal(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					time.Sleep(delay)
					if _, err := c.Write([]byte("ok\n")); err != nil || once {
						return
					}
				}
			}()
		}
	}()
	return ln
}

// serveLines answers each line "<id>\n" with "ok\n", hitting the markers
// with the id on the way and passing the line to a backend of its own
// (serveBackend) on a connection per client connection, as the gateway
// forwards a call.
func serveLines(t *testing.T) *net.TCPListener {
	t.Helper()
	backend := serveBackend(t, backendTime, false).Addr().String()
	ln := listenLocal(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				// The read and the first marker on one thread, as a
				// goroutine's read and its handler's start almost always
				// are; and the backend marker and the send after it.
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				bc, err := net.Dial("tcp", backend)
				if err != nil {
					return
				}
				defer bc.Close()
				r, br := bufio.NewReader(c), bufio.NewReader(bc)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					id, _ := strconv.ParseUint(strings.TrimSpace(line), 10, 64)
					probeRequestStart(id)
					probeAuthenticated(id)
					probeDecided(id)
					probeForwardStart(id)
					probeBackendSent(id)
					if _, err := bc.Write([]byte(line)); err != nil {
						return
					}
					if _, err := br.ReadString('\n'); err != nil {
						return
					}
					probeBackendFirstByte(id)
					probeBackendDone(id)
					probeReplyDone(id)
					if _, err := c.Write([]byte("ok\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln
}

// serveLinesLoose is serveLines as a gateway meets it at its worst: no
// goroutine held to a thread, and between the request's marker and the
// backend's answer a round trip on an unrelated UDP socket (a DNS lookup)
// and a connection to the backend dialled for the call, which the backend
// closes after its answer (its FIN arrives unread before the gateway
// closes, and the next call's socket may take the freed one's address).
func serveLinesLoose(t *testing.T) *net.TCPListener {
	t.Helper()
	backend := serveBackend(t, backendTime, true).Addr().String()
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udp.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := udp.ReadFromUDP(buf)
			if err != nil {
				return
			}
			_, _ = udp.WriteToUDP(buf[:n], from)
		}
	}()
	ln := listenLocal(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					id, _ := strconv.ParseUint(strings.TrimSpace(line), 10, 64)
					probeRequestStart(id)
					probeForwardStart(id)
					probeBackendSent(id)
					if !lookupAndCall(udp.LocalAddr().String(), backend, line) {
						return
					}
					probeBackendFirstByte(id)
					probeBackendDone(id)
					probeReplyDone(id)
					if _, err := c.Write([]byte("ok\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln
}

// lookupAndCall makes a UDP round trip to lookup, then sends line to the
// backend on a new connection and reads its answer.
func lookupAndCall(lookup, backend, line string) bool {
	u, err := net.Dial("udp", lookup)
	if err != nil {
		return false
	}
	defer u.Close()
	buf := make([]byte, 64)
	if _, err := u.Write([]byte("q")); err != nil {
		return false
	}
	if _, err := u.Read(buf); err != nil {
		return false
	}
	bc, err := net.Dial("tcp", backend)
	if err != nil {
		return false
	}
	defer bc.Close()
	if _, err := bc.Write([]byte(line)); err != nil {
		return false
	}
	_, err = bufio.NewReader(bc).ReadString('\n')
	return err == nil
}

func testMarkers() map[string]uintptr {
	return map[string]uintptr{
		"probeRequestStart":     reflect.ValueOf(probeRequestStart).Pointer(),
		"probeAuthenticated":    reflect.ValueOf(probeAuthenticated).Pointer(),
		"probeDecided":          reflect.ValueOf(probeDecided).Pointer(),
		"probeForwardStart":     reflect.ValueOf(probeForwardStart).Pointer(),
		"probeBackendSent":      reflect.ValueOf(probeBackendSent).Pointer(),
		"probeBackendFirstByte": reflect.ValueOf(probeBackendFirstByte).Pointer(),
		"probeBackendDone":      reflect.ValueOf(probeBackendDone).Pointer(),
		"probeReplyDone":        reflect.ValueOf(probeReplyDone).Pointer(),
	}
}

func attachOrSkip(t *testing.T, o Options) *Probe {
	t.Helper()
	if err := Check(); err != nil {
		t.Skip(err.Error())
	}
	// go test strips the symbol table: the markers are found by address.
	o.Addresses = testMarkers()
	p, err := Attach(o)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func callLines(t *testing.T, addr string, n int) time.Duration {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	var total time.Duration
	for i := 1; i <= n; i++ {
		start := time.Now()
		if _, err := c.Write([]byte(strconv.Itoa(i) + "\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		total += time.Since(start)
	}
	return total / time.Duration(n)
}

// waitCalls waits until the collector has assembled n calls.
func waitCalls(t *testing.T, p *Probe, n int64) Summary {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := p.Total()
		if s.Calls >= n || time.Now().After(deadline) {
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestProbeSeesEveryStage(t *testing.T) {
	ln := serveLines(t)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	p := attachOrSkip(t, Options{Ports: []uint16{port}, Stages: true})
	const n = 50
	mean := callLines(t, ln.Addr().String(), n)
	s := waitCalls(t, p, n)
	if s.Calls != n || !s.Sockets {
		t.Fatalf("probe saw %d complete calls (sockets %v), want %d: %+v", s.Calls, s.Sockets, n, s)
	}
	names := map[string]Percentiles{}
	for _, st := range s.Stages {
		names[st.Name] = st.Percentiles
	}
	for _, want := range []string{"receive", "authenticate", "decide", "prepare", "client out", "backend", "wake-up", "client in", "respond", "send"} {
		if names[want].Count != n {
			t.Errorf("stage %s: %d calls, want %d", want, names[want].Count, n)
		}
	}
	if s.Unbound != 0 {
		t.Errorf("%d backend arrivals not bound to their calls", s.Unbound)
	}
	// The backend's own time ends when its answer arrives: past its sleep,
	// and short of the first byte read by the wake-up.
	if s.Backend.P50 < float64(backendTime.Microseconds()) {
		t.Errorf("backend p50 %.1f µs, below the backend's %s sleep", s.Backend.P50, backendTime)
	}
	if w := names["wake-up"]; w.P50 <= 0 || w.P50 >= s.Backend.P50 {
		t.Errorf("wake-up p50 %.1f µs, want more than nothing and less than the backend's %.1f", w.P50, s.Backend.P50)
	}
	// The overhead is a part of what the client waits beyond the backend.
	beyond := float64((mean - backendTime).Microseconds())
	if s.Overhead.P50 <= 0 || s.Overhead.P50 > beyond*3+100 {
		t.Errorf("overhead p50 %.1f µs; the client waited %.1f µs beyond the backend on average", s.Overhead.P50, beyond)
	}
	t.Logf("mean round trip %s; probe: overhead p50 %.1f µs, ingress %.1f, egress %.1f, backend %.1f",
		mean, s.Overhead.P50, s.Ingress.P50, s.Egress.P50, s.Backend.P50)
}

// TestProbeFindsTheAnswerItself: the backend's time ends at its answer's
// arrival even when the goroutine is not held to a thread, reads a UDP
// answer on the way and dials the backend for the call: the probe takes
// the arrival of what the marker's thread last read, not of what was sent
// first after the request's marker.
func TestProbeFindsTheAnswerItself(t *testing.T) {
	ln := serveLinesLoose(t)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	p := attachOrSkip(t, Options{Ports: []uint16{port}})
	const n = 50
	callLines(t, ln.Addr().String(), n)
	s := waitCalls(t, p, n)
	if s.Calls != n {
		t.Fatalf("probe saw %d complete calls, want %d: %+v", s.Calls, n, s)
	}
	wake := Percentiles{}
	for _, st := range s.Stages {
		if st.Name == "wake-up" {
			wake = st.Percentiles
		}
	}
	// A goroutine may move threads between its read and the marker now and
	// then; most calls must have their arrival.
	if wake.Count < n*9/10 || s.WithoutArrival+s.Unbound > n/10 {
		t.Errorf("wake-up seen in %d calls, %d without an arrival, %d arrivals not their own; want %d", wake.Count, s.WithoutArrival, s.Unbound, n)
	}
	// No call's backend time may be shorter than the backend's sleep: that
	// would be an arrival that was not the answer.
	p.mu.Lock()
	least := time.Duration(p.total.backend.Min())
	p.mu.Unlock()
	if least < backendTime-time.Microsecond { // the histogram's bucket there is about 1 µs wide
		t.Errorf("the shortest backend time %s, below the backend's %s sleep: an arrival that was not the answer", least, backendTime)
	}
	t.Logf("probe: backend p50 %.1f µs, wake-up p50 %.1f µs, overhead p50 %.1f µs", s.Backend.P50, wake.P50, s.Overhead.P50)
}

func TestProbeMarkersOnly(t *testing.T) {
	ln := serveLines(t)
	p := attachOrSkip(t, Options{NoSockets: true})
	const n = 20
	callLines(t, ln.Addr().String(), n)
	s := waitCalls(t, p, n)
	if s.Calls != n || s.Sockets {
		t.Fatalf("probe saw %d complete calls (sockets %v), want %d between markers: %+v", s.Calls, s.Sockets, n, s)
	}
	for _, st := range s.Stages {
		if st.Name == "receive" || st.Name == "send" || st.Name == "wake-up" {
			t.Errorf("socket stage %s without the socket probes", st.Name)
		}
	}
	// Detached, the markers run on.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	callLines(t, ln.Addr().String(), 5)
}

func TestAttachNamesTheMissingMarker(t *testing.T) {
	if err := Check(); err != nil {
		t.Skip(err.Error())
	}
	_, err := Attach(Options{SymbolPrefix: "github.com/pbac-gateway/pbac/nowhere.", NoSockets: true})
	if err == nil || !strings.Contains(err.Error(), "nowhere.probeRequestStart") {
		t.Fatalf("err = %v, want it to name the missing marker", err)
	}
}

func TestListeningPorts(t *testing.T) {
	ln := serveLines(t)
	ports, err := ListeningPorts(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	want := uint16(ln.Addr().(*net.TCPAddr).Port)
	for _, p := range ports {
		if p == want {
			return
		}
	}
	t.Fatalf("ports %v, want %d among them", ports, want)
}

func TestCheckNamesWhatIsMissing(t *testing.T) {
	const root = 1<<capSysAdmin | 1<<capBPF | 1<<capPerfmon
	for _, c := range []struct {
		name         string
		goos, goarch string
		euid         int
		caps         uint64
		capErr       error
		btfErr       error
		want         []string
	}{
		{name: "root with BTF", goos: "linux", goarch: "amd64", caps: root},
		{name: "just the two capabilities", goos: "linux", goarch: "amd64", euid: 1000, caps: 1<<capBPF | 1<<capPerfmon},
		{name: "no capabilities", goos: "linux", goarch: "amd64", euid: 1000,
			want: []string{"cannot run: missing CAP_BPF and CAP_PERFMON (not root", "setcap cap_bpf,cap_perfmon+ep"}},
		{name: "CAP_BPF only", goos: "linux", goarch: "amd64", euid: 1000, caps: 1 << capBPF,
			want: []string{"missing CAP_PERFMON"}},
		{name: "no BTF", goos: "linux", goarch: "amd64", caps: root, btfErr: fs.ErrNotExist,
			want: []string{"kernel BTF at /sys/kernel/btf/vmlinux (missing; a kernel built with CONFIG_DEBUG_INFO_BTF=y"}},
		{name: "neither", goos: "linux", goarch: "amd64", euid: 1000, btfErr: fs.ErrNotExist,
			want: []string{"missing CAP_BPF and CAP_PERFMON", "; missing kernel BTF"}},
		{name: "arm64", goos: "linux", goarch: "arm64", caps: root,
			want: []string{"needs Linux on amd64 (this is linux/arm64"}},
		{name: "caps unreadable", goos: "linux", goarch: "amd64", capErr: errors.New("no /proc"),
			want: []string{"cannot read them: no /proc"}},
	} {
		err := check(c.goos, c.goarch, c.euid, c.caps, c.capErr, c.btfErr)
		if len(c.want) == 0 {
			if err != nil {
				t.Errorf("%s: %v, want nil", c.name, err)
			}
			continue
		}
		var ue *UnavailableError
		if !errors.As(err, &ue) {
			t.Errorf("%s: %v, want an *UnavailableError", c.name, err)
			continue
		}
		msg := err.Error()
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: %q does not say %q", c.name, msg, w)
			}
		}
	}
}

// BenchmarkMarkerProbed is what a marker costs with the probe attached: an
// entry uprobe's trap into the kernel, the program and a ring buffer
// record (compare host's BenchmarkProbeMarker, unprobed).
func BenchmarkMarkerProbed(b *testing.B) {
	if err := Check(); err != nil {
		b.Skip(err.Error())
	}
	p, err := Attach(Options{NoSockets: true, Addresses: testMarkers()})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	for i := range b.N {
		probeForwardStart(uint64(i))
	}
}

// BenchmarkSocketsProbed is what the socket stages cost a round trip on
// loopback: a line written to a server on a port the probe watches as the
// gateway's (serveBackend, answering at once) and its answer read back,
// unprobed and then probed (the
// tracepoints' programs run on both sockets' sends, reads and arrivals;
// no trap). Compare the two in one run.
func BenchmarkSocketsProbed(b *testing.B) {
	if err := Check(); err != nil {
		b.Skip(err.Error())
	}
	ln := serveBackend(b, 0, false)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	roundTrips := func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Write([]byte("1\n")); err != nil {
				b.Fatal(err)
			}
			if _, err := r.ReadString('\n'); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("unprobed", roundTrips)
	p, err := Attach(Options{Ports: []uint16{uint16(ln.Addr().(*net.TCPAddr).Port)}, Addresses: testMarkers()})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	b.Run("probed", roundTrips)
}
