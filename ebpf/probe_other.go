//go:build !linux

package ebpf

import "log/slog"

// MarkerPrefix is the package path of the gateway's markers (gateway/probe_markers.go),
// with the dot that joins it to a function's name in the symbol table.
const MarkerPrefix = "github.com/pbac-gateway/pbac/gateway."

// Options say what to probe; see the Linux build.
type Options struct {
	PID          int
	Executable   string
	SymbolPrefix string
	Ports        []uint16
	Addresses    map[string]uintptr
	Stages       bool
	NoSockets    bool
	Logger       *slog.Logger
}

// Probe is attached to a gateway; on this system it never is.
type Probe struct {
	*Collector
}

// Attach reports what is missing: the probe runs on Linux only.
func Attach(Options) (*Probe, error) { return nil, Check() }

// PID is the probed process.
func (p *Probe) PID() int { return 0 }

// Ports are the gateway ports the socket stages watch.
func (p *Probe) Ports() []uint16 { return nil }

// Close does nothing.
func (p *Probe) Close() error { return nil }

// ListeningPorts needs Linux's /proc.
func ListeningPorts(int) ([]uint16, error) { return nil, Check() }
