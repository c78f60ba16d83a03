//go:build linux

package ebpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	cebpf "github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
)

// MarkerPrefix is the package path of the gateway's markers (gateway/probe_markers.go),
// with the dot that joins it to a function's name in the symbol table.
const MarkerPrefix = "github.com/pbac-gateway/pbac/gateway."

// readInterval is how often the reader empties the ring buffer.
const readInterval = 50 * time.Millisecond

// Options say what to probe.
type Options struct {
	// PID is the gateway's process; 0 is this process.
	PID int
	// Executable is the gateway's executable; default /proc/<PID>/exe.
	Executable string
	// SymbolPrefix is the markers' package path with a trailing dot;
	// default MarkerPrefix.
	SymbolPrefix string
	// Ports are the local ports of the gateway's client connections (the
	// ports it listens on), for the socket-level stages; when empty, the
	// TCP ports the process listens on.
	Ports []uint16
	// Addresses are the markers' entry addresses in the process, by name
	// (gateway.ProbeMarkers for this process); when set they are used instead
	// of the executable's symbol table, which go run and go test leave out.
	Addresses map[string]uintptr
	// Stages attaches the markers only the per-stage breakdown needs
	// (authenticate, decide, respond): three more uprobe hits per call.
	Stages bool
	// NoSockets leaves out the socket-level stages: calls are then measured
	// between the markers only.
	NoSockets bool
	Logger    *slog.Logger
}

// Probe is attached to a gateway and collects its calls.
type Probe struct {
	*Collector
	pid     int
	ports   []uint16
	maps    *probeMaps
	progs   []*cebpf.Program
	links   []link.Link
	reader  *ringbuf.Reader
	done    chan struct{}
	closeMu sync.Mutex
	closed  bool
}

// Attach checks the machine (see Check), loads the programs and attaches
// them to the gateway process. Close detaches.
func Attach(o Options) (*Probe, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.PID == 0 {
		o.PID = os.Getpid()
	}
	if o.Executable == "" {
		o.Executable = "/proc/" + strconv.Itoa(o.PID) + "/exe"
	}
	if o.SymbolPrefix == "" {
		o.SymbolPrefix = MarkerPrefix
	}
	var err error
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("lift the locked-memory limit for eBPF maps: %w", err)
	}
	sockets := !o.NoSockets
	ports := o.Ports
	if sockets && len(ports) == 0 {
		if ports, err = ListeningPorts(o.PID); err != nil || len(ports) == 0 {
			log.Warn("probe: no listening ports found for the socket stages; measuring between markers only", "pid", o.PID, "err", err)
			sockets = false
		}
	}
	p := &Probe{Collector: NewCollector(sockets), pid: o.PID, ports: ports, done: make(chan struct{})}
	attached := false
	defer func() {
		if !attached {
			p.release()
		}
	}()
	if p.maps, err = newProbeMaps(o.PID); err != nil {
		return nil, err
	}
	if sockets {
		// The socket programs and the first byte's marker read the
		// goroutine through the thread's FS base.
		if p.maps.fsBase, err = fsBaseOffset(); err != nil {
			return nil, err
		}
	}
	ex, err := link.OpenExecutable(o.Executable)
	if err != nil {
		return nil, fmt.Errorf("open the gateway's executable: %w", err)
	}
	// The split markers first: when both attach, the handler's ends of
	// the backend call are needed only for the breakdown.
	split := 0
	for _, pass := range []bool{true, false} {
		for _, mk := range markers {
			if mk.split != pass {
				continue
			}
			if (mk.handler && split == 2 || mk.detail && (sockets || mk.stage != StageReplyDone)) && !o.Stages {
				continue
			}
			attachedOne, err := p.attachMarker(ex, o, mk.stage, mk.name, mk.required && !(mk.handler && split == 2), sockets, log)
			if err != nil {
				return nil, err
			}
			if mk.split && attachedOne {
				split++
			}
		}
	}
	if sockets {
		if err := p.attachSockets(); err != nil {
			return nil, err
		}
	}
	if p.reader, err = ringbuf.NewReader(p.maps.events); err != nil {
		return nil, fmt.Errorf("read the probe's ring buffer: %w", err)
	}
	attached = true
	go p.read(log)
	log.Info("probe attached", "pid", o.PID, "executable", o.Executable, "sockets", sockets, "ports", ports, "backend_split", split == 2)
	return p, nil
}

// attachMarker attaches the program of stage to the marker name and
// reports whether it did; a marker not in the executable is an error only
// when required.
func (p *Probe) attachMarker(ex *link.Executable, o Options, stage Stage, name string, required, sockets bool, log *slog.Logger) (bool, error) {
	insns := p.maps.markerProgram(stage)
	switch {
	case stage == StageStart && sockets:
		insns = p.maps.requestStartProgram()
	case stage == StageBackendFirstByte && sockets:
		insns = p.maps.firstByteProgram()
	}
	prog, err := loadProgram("pbac_"+stage.String(), cebpf.Kprobe, insns)
	if err != nil {
		return false, err
	}
	p.progs = append(p.progs, prog)
	symbol, uo := o.SymbolPrefix+name, &link.UprobeOptions{PID: o.PID}
	if o.Addresses != nil {
		addr, ok := o.Addresses[name]
		if !ok {
			if required {
				return false, fmt.Errorf("no address for marker %s", name)
			}
			return false, nil
		}
		if uo.Address, err = fileOffset(o.PID, uint64(addr)); err != nil {
			return false, fmt.Errorf("marker %s: %w", name, err)
		}
		symbol = ""
	}
	l, err := ex.Uprobe(symbol, prog, uo)
	if err != nil {
		if !required && errors.Is(err, link.ErrNoSymbol) {
			log.Info("probe: optional marker not in the executable", "marker", name)
			return false, nil
		}
		return false, fmt.Errorf("attach to marker %s%s in %s (an executable built by go run or with -ldflags=-s has no symbol table; build it with go build): %w",
			o.SymbolPrefix, name, o.Executable, err)
	}
	p.links = append(p.links, l)
	return true, nil
}

func (p *Probe) attachSockets() error {
	off, err := localPortOffset()
	if err != nil {
		return err
	}
	for _, port := range p.ports {
		var key [2]byte
		binary.NativeEndian.PutUint16(key[:], port)
		if err := p.maps.ports.Put(key, uint8(1)); err != nil {
			return fmt.Errorf("probe ports: %w", err)
		}
	}
	for _, k := range []struct {
		tracepoint, name string
		build            func(*probeMaps, int32) asm.Instructions
	}{
		{"sk_data_ready", "pbac_readable", (*probeMaps).readableProgram},
		{"sock_recv_length", "pbac_recv", (*probeMaps).recvProgram},
		{"sock_send_length", "pbac_send", (*probeMaps).sendProgram},
	} {
		prog, err := loadProgram(k.name, cebpf.RawTracepoint, k.build(p.maps, off))
		if err != nil {
			return err
		}
		p.progs = append(p.progs, prog)
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: k.tracepoint, Program: prog})
		if err != nil {
			return fmt.Errorf("attach to tracepoint sock:%s (kernel 6.6 or later has it): %w", k.tracepoint, err)
		}
		p.links = append(p.links, l)
	}
	return nil
}

// read feeds the ring buffer's events to the collector until Close.
func (p *Probe) read(log *slog.Logger) {
	defer close(p.done)
	var rec ringbuf.Record
	for {
		p.reader.SetDeadline(time.Now().Add(readInterval))
		if err := p.reader.ReadInto(&rec); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if !errors.Is(err, ringbuf.ErrClosed) {
				log.Warn("probe: reading events stopped", "err", err)
			}
			return
		}
		if len(rec.RawSample) < eventSize {
			continue
		}
		b := rec.RawSample
		p.Add(binary.LittleEndian.Uint64(b[0:]), Stage(binary.LittleEndian.Uint64(b[8:])), binary.LittleEndian.Uint64(b[16:]))
	}
}

// PID is the probed process.
func (p *Probe) PID() int { return p.pid }

// Ports are the gateway ports the socket stages watch (none when they are off).
func (p *Probe) Ports() []uint16 {
	if !p.sockets {
		return nil
	}
	return p.ports
}

// Close detaches the probe; the gateway runs on untouched.
func (p *Probe) Close() error {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	// Detach first so no event comes after the reader stops.
	for _, l := range p.links {
		_ = l.Close()
	}
	p.links = nil
	if p.reader != nil {
		_ = p.reader.Close()
		<-p.done
	}
	p.release()
	return nil
}

func (p *Probe) release() {
	for _, l := range p.links {
		_ = l.Close()
	}
	p.links = nil
	if p.reader != nil {
		_ = p.reader.Close()
	}
	for _, prog := range p.progs {
		_ = prog.Close()
	}
	p.progs = nil
	if p.maps != nil {
		p.maps.close()
	}
}
