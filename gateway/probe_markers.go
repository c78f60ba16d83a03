package gateway

import (
	"reflect"
)

// Probe markers: empty, never-inlined functions the gateway calls at each
// stage of a forwarded call, with the call's probe id (fasthttp's request
// id: its connection counter and the request's number on the connection).
// `pbac probe` (ebpf/) attaches entry uprobes to them and reads the id
// from the first argument register of Go's register ABI. With no probe
// attached a marker is a call and a return, about a nanosecond; the
// symbols' names are the probe's interface, so renaming one means
// renaming it in ebpf.Markers too.
//
// Only entry probes: a uretprobe rewrites the return address on the
// goroutine stack, which the Go runtime may move, and crashes the process.

// probeRequestStart: the handler has the request (read and parsed by the
// server).
//
//go:noinline
func probeRequestStart(id uint64) { _ = id }

// probeAuthenticated: the token has been introspected.
//
//go:noinline
func probeAuthenticated(id uint64) { _ = id }

// probeDecided: policy allowed the call.
//
//go:noinline
func probeDecided(id uint64) { _ = id }

// probeForwardStart: the request to the backend is about to be sent.
//
//go:noinline
func probeForwardStart(id uint64) { _ = id }

// probeBackendDone: the backend's response headers are in.
//
//go:noinline
func probeBackendDone(id uint64) { _ = id }

// probeBackendSent: the request goes to the forwarding client, which
// writes it and reads the answer's headers before it returns (forward).
//
//go:noinline
func probeBackendSent(id uint64) { _ = id }

// probeBackendFirstByte: the forwarding client has returned with the
// answer's headers.
//
//go:noinline
func probeBackendFirstByte(id uint64) { _ = id }

// probeReplyDone: the handler has handed the reply to the server, which
// writes it once the handler returns.
//
//go:noinline
func probeReplyDone(id uint64) { _ = id }

// ProbeMarkers are the markers' entry addresses in this process, by name:
// a probe attaching to its own process (pbac up --probe, pbac bench
// --probe) uses them, since go run and go test build without a symbol
// table.
func ProbeMarkers() map[string]uintptr {
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
