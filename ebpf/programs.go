//go:build linux

package ebpf

import (
	"fmt"

	cebpf "github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
)

// The programs are written in eBPF assembly with cilium/ebpf's asm package,
// so building the probe needs no C compiler. Each program is a few dozen
// instructions.
//
// Marker programs (entry uprobes on the gateway's marker functions) read
// the call's id from RAX, the first integer argument of Go's register ABI
// on amd64, and write {id, stage, time} to the ring buffer.
//
// Socket programs (raw tracepoints of the sock subsystem, so no kprobe
// support is needed) add the two ends only the kernel sees, on the
// gateway's own connections (those whose local port is one the gateway
// listens on):
//
//   - sock:sk_data_ready: the client's request has arrived on the
//     connection (on loopback, within the sender's send call). The time is
//     kept per socket until the gateway reads it.
//   - sock:sock_recv_length: a gateway goroutine has read that socket; the
//     arrival moves to the goroutine (its g, as below), so the marker it
//     hits next (probeRequestStart) can claim it for its call, on whichever
//     thread, and remembers the socket as the call's.
//   - sock:sock_send_length: the first send on the call's socket after that
//     is the reply leaving for the client.
//
// and, on the gateway's other connections (those it sends on from a port
// it does not listen on: its backends, and whatever else it talks to), when
// the backend's answer arrives (StageBackendArrived), matched to a call on
// the reading side, as the request's arrival is:
//
//   - sock:sock_send_length by a gateway thread marks the socket as one
//     awaiting data (outbound), anew at every send: what arrived before it
//     (a FIN left unread, a freed socket's at the same address) is not its
//     answer;
//   - sock:sk_data_ready on a marked socket keeps the time of the first
//     data since then or since the gateway last read it;
//   - sock:sock_recv_length by a gateway thread hands that time to the
//     goroutine reading (answered, keyed by its g, which Go keeps at FS
//     base − 8); a read that finds nothing arrived since the send drops
//     what that goroutine held, one of more of what it took keeps it, and
//     a peek (the pool's liveness check) is no read;
//   - the marker probeBackendFirstByte, which the same goroutine hits once
//     the forwarding client has read the answer's headers, claims it for
//     its call (the g read the same way).
//
// So a DNS answer, a TLS handshake or a session's initialize on the way to
// the backend is read before the answer and replaced by it, and neither
// the thread that sent the request nor the one that read the answer
// matters. An answer that arrived before its request's send was marked is
// not seen, and the call is counted as measured without it; so is one
// whose answer came while the send's tracepoint was still to fire (it
// fires after the send returns, and resets the mark). (On the aggregated
// /mcp the marker comes after the whole body is read.) Gateway threads are
// told by their tgid as the kernel sees it, which the first marker of each
// call records (self): the pid the probe is given is in its own pid
// namespace, which a probe run in a container does not share with the
// kernel. Until the first marker, that pid stands in.
// Only the gateway's sends and reads run past that test; sk_data_ready,
// which runs in the sender, costs every socket on the host two map
// lookups.

// regsAX is the offset of RAX in x86-64 pt_regs: Go ABIInternal's first
// integer argument.
const regsAX = 80

// A raw tracepoint's context is its arguments, a u64 each:
// sk_data_ready(sk), sock_recv_length(sk, ret, flags),
// sock_send_length(sk, ret, flags).
const (
	argSock  = 0
	argRet   = 8
	argFlags = 16
	msgPeek  = 2 // MSG_PEEK
)

// An outbound socket's value: sent (nothing arrived since the gateway's
// last send on it), read (what arrived has been read), or the time the
// first data since then arrived, unread.
const (
	outboundSent = 0
	outboundRead = 1
)

// Flags of bpf_map_update_elem.
const (
	bpfAny     = 0
	bpfNoExist = 1
)

// bpfRBNoWakeup: a record does not wake the reader, which polls the ring
// every readInterval instead: a wake-up per call would cost more than the
// probe's programs.
const bpfRBNoWakeup = 1

// eventSize is the ring buffer record: id, stage, time (ns since boot),
// three little-endian uint64s.
const eventSize = 24

// probeMaps are the maps the programs share.
type probeMaps struct {
	events  *cebpf.Map // ring buffer of events
	ports   *cebpf.Map // u16 local port -> 1: the gateway's listening ports
	arrival *cebpf.Map // sk -> ns: request data arrived, not yet read
	pending *cebpf.Map // g -> {ns, sk}: read by this goroutine, not yet claimed by a call
	callOf  *cebpf.Map // sk -> call id: the call being served on this connection
	// outbound: sk -> ns: a socket the gateway sends on from a port it
	// does not listen on; 0 while no data waits unread, else when the first
	// did arrive.
	outbound *cebpf.Map
	// answered: g -> ns: the arrival of what this goroutine (its g's
	// address, the same on whichever thread it runs) last read on an
	// outbound socket.
	answered *cebpf.Map
	// self: 0 -> the gateway's tgid as the kernel sees it (the host's pid
	// namespace), seeded with the pid the probe was given and written by
	// each call's first marker, whose uprobe fires in the gateway alone.
	self *cebpf.Map
	// fsBase is the offset of the thread's FS base in struct task_struct:
	// Go keeps the running g at FS base − 8 (kernel BTF; set before the
	// socket programs are built).
	fsBase int32
}

func newProbeMaps(pid int) (*probeMaps, error) {
	m := &probeMaps{}
	specs := []struct {
		dst  **cebpf.Map
		spec cebpf.MapSpec
	}{
		{&m.events, cebpf.MapSpec{Name: "pbac_events", Type: cebpf.RingBuf, MaxEntries: 1 << 20}},
		{&m.ports, cebpf.MapSpec{Name: "pbac_ports", Type: cebpf.Hash, KeySize: 2, ValueSize: 1, MaxEntries: 64}},
		{&m.arrival, cebpf.MapSpec{Name: "pbac_arrival", Type: cebpf.LRUHash, KeySize: 8, ValueSize: 8, MaxEntries: 16384}},
		{&m.pending, cebpf.MapSpec{Name: "pbac_pending", Type: cebpf.LRUHash, KeySize: 8, ValueSize: 16, MaxEntries: 16384}},
		{&m.callOf, cebpf.MapSpec{Name: "pbac_callof", Type: cebpf.LRUHash, KeySize: 8, ValueSize: 8, MaxEntries: 16384}},
		{&m.outbound, cebpf.MapSpec{Name: "pbac_outbound", Type: cebpf.LRUHash, KeySize: 8, ValueSize: 8, MaxEntries: 16384}},
		{&m.answered, cebpf.MapSpec{Name: "pbac_answered", Type: cebpf.LRUHash, KeySize: 8, ValueSize: 8, MaxEntries: 16384}},
		{&m.self, cebpf.MapSpec{Name: "pbac_self", Type: cebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1}},
	}
	for _, s := range specs {
		mp, err := cebpf.NewMap(&s.spec)
		if err != nil {
			m.close()
			return nil, fmt.Errorf("create map %s: %w", s.spec.Name, err)
		}
		*s.dst = mp
	}
	if err := m.self.Put(uint32(0), uint64(pid)); err != nil {
		m.close()
		return nil, fmt.Errorf("map pbac_self: %w", err)
	}
	return m, nil
}

func (m *probeMaps) close() {
	for _, mp := range []*cebpf.Map{m.events, m.ports, m.arrival, m.pending, m.callOf, m.outbound, m.answered, m.self} {
		if mp != nil {
			_ = mp.Close()
		}
	}
}

// emit writes the event {id, stage, ts} from the stack slot at -32..-8.
// idReg and tsReg must survive helper calls (R6–R9) or be set just before.
func (m *probeMaps) emit(idReg asm.Register, stage Stage, tsReg asm.Register) asm.Instructions {
	return asm.Instructions{
		asm.StoreMem(asm.R10, -32, idReg, asm.DWord),
		asm.Mov.Imm(asm.R1, int32(stage)),
		asm.StoreMem(asm.R10, -24, asm.R1, asm.DWord),
		asm.StoreMem(asm.R10, -16, tsReg, asm.DWord),
		asm.LoadMapPtr(asm.R1, m.events.FD()),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, -32),
		asm.Mov.Imm(asm.R3, eventSize),
		asm.Mov.Imm(asm.R4, bpfRBNoWakeup),
		asm.FnRingbufOutput.Call(),
	}
}

// whichSocket jumps to exit when the local port of the socket in skReg
// (R6–R9) cannot be read, and to other when the gateway does not listen
// on it. It uses the stack slot at -64.
func (m *probeMaps) whichSocket(skReg asm.Register, portOff int32, exit, other string) asm.Instructions {
	return join(asm.Instructions{
		asm.StoreImm(asm.R10, -64, 0, asm.Word),
		asm.Mov.Reg(asm.R1, asm.R10),
		asm.Add.Imm(asm.R1, -64),
		asm.Mov.Imm(asm.R2, 2),
		asm.Mov.Reg(asm.R3, skReg),
		asm.Add.Imm(asm.R3, portOff),
		asm.FnProbeReadKernel.Call(),
		asm.JNE.Imm(asm.R0, 0, exit),
	}, mapLookup(m.ports, -64), asm.Instructions{asm.JEq.Imm(asm.R0, 0, other)})
}

// stackKey points R2 (and R3 when val != 0) at stack slots.
func stackPtr(dst asm.Register, off int32) asm.Instructions {
	return asm.Instructions{asm.Mov.Reg(dst, asm.R10), asm.Add.Imm(dst, off)}
}

func ret() asm.Instructions {
	return asm.Instructions{asm.Mov.Imm(asm.R0, 0).WithSymbol("exit"), asm.Return()}
}

func join(parts ...asm.Instructions) asm.Instructions {
	var out asm.Instructions
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// mapLookup looks up the key in the stack slot at key in mp: R0 is the
// value's address, or 0.
func mapLookup(mp *cebpf.Map, key int32) asm.Instructions {
	return join(asm.Instructions{asm.LoadMapPtr(asm.R1, mp.FD())}, stackPtr(asm.R2, key),
		asm.Instructions{asm.FnMapLookupElem.Call()})
}

// mapUpdate writes the value in the stack slot at val under the key in the
// slot at key in mp, as flags allow (bpfAny, bpfNoExist).
func mapUpdate(mp *cebpf.Map, key, val, flags int32) asm.Instructions {
	return join(asm.Instructions{asm.LoadMapPtr(asm.R1, mp.FD())}, stackPtr(asm.R2, key), stackPtr(asm.R3, val),
		asm.Instructions{asm.Mov.Imm(asm.R4, flags), asm.FnMapUpdateElem.Call()})
}

// mapDelete deletes the key in the stack slot at key from mp.
func mapDelete(mp *cebpf.Map, key int32) asm.Instructions {
	return join(asm.Instructions{asm.LoadMapPtr(asm.R1, mp.FD())}, stackPtr(asm.R2, key),
		asm.Instructions{asm.FnMapDeleteElem.Call()})
}

// markerProgram reports a marker's stage with the call id from RAX.
func (m *probeMaps) markerProgram(stage Stage) asm.Instructions {
	return join(
		asm.Instructions{
			asm.LoadMem(asm.R7, asm.R1, regsAX, asm.DWord),
			asm.FnKtimeGetNs.Call(),
			asm.Mov.Reg(asm.R9, asm.R0),
		},
		m.emit(asm.R7, stage, asm.R9),
		ret(),
	)
}

// gatewayThread jumps to exit unless the current thread is the gateway's
// (its tgid is self's); it leaves pid_tgid at the stack slot at -72 and
// uses the one at -80.
func (m *probeMaps) gatewayThread(exit string) asm.Instructions {
	return join(
		asm.Instructions{
			asm.FnGetCurrentPidTgid.Call(),
			asm.StoreMem(asm.R10, -72, asm.R0, asm.DWord),
			asm.StoreImm(asm.R10, -80, 0, asm.Word),
		},
		mapLookup(m.self, -80),
		asm.Instructions{
			asm.JEq.Imm(asm.R0, 0, exit),
			asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
			asm.LoadMem(asm.R2, asm.R10, -72, asm.DWord),
			asm.RSh.Imm(asm.R2, 32),
			asm.JNE.Reg(asm.R2, asm.R1, exit),
		},
	)
}

// currentG reads the goroutine the current thread runs (the g pointer Go
// keeps at FS base − 8) to the stack slot at -104; it uses the one at -96
// and jumps to exit when it cannot be read.
func (m *probeMaps) currentG(exit string) asm.Instructions {
	return join(
		asm.Instructions{
			asm.FnGetCurrentTask.Call(),
			asm.Mov.Reg(asm.R3, asm.R0),
			asm.Add.Imm(asm.R3, m.fsBase),
		},
		stackPtr(asm.R1, -96),
		asm.Instructions{
			asm.Mov.Imm(asm.R2, 8),
			asm.FnProbeReadKernel.Call(),
			asm.JNE.Imm(asm.R0, 0, exit),
			asm.LoadMem(asm.R3, asm.R10, -96, asm.DWord),
			asm.Add.Imm(asm.R3, -8),
		},
		stackPtr(asm.R1, -104),
		asm.Instructions{
			asm.Mov.Imm(asm.R2, 8),
			asm.FnProbeReadUser.Call(),
			asm.JNE.Imm(asm.R0, 0, exit),
		},
	)
}

// rememberSelf writes this thread's tgid (pid_tgid at the stack slot at
// -40) to self; it uses the slots at -80 and -88.
func (m *probeMaps) rememberSelf() asm.Instructions {
	return join(
		asm.Instructions{
			asm.LoadMem(asm.R1, asm.R10, -40, asm.DWord),
			asm.RSh.Imm(asm.R1, 32),
			asm.StoreMem(asm.R10, -88, asm.R1, asm.DWord),
			asm.StoreImm(asm.R10, -80, 0, asm.Word),
		},
		mapUpdate(m.self, -80, -88, bpfAny),
	)
}

// firstByteProgram reports StageBackendFirstByte and, when this goroutine
// has read an answer on an outbound socket (recvProgram),
// StageBackendArrived with that answer's arrival time.
func (m *probeMaps) firstByteProgram() asm.Instructions {
	return join(
		asm.Instructions{
			asm.LoadMem(asm.R7, asm.R1, regsAX, asm.DWord),
			asm.FnKtimeGetNs.Call(),
			asm.Mov.Reg(asm.R9, asm.R0),
		},
		m.emit(asm.R7, StageBackendFirstByte, asm.R9),
		// The goroutine as the reads saw it (FS base − 8, not R14): should
		// that place ever not hold g, both sides key by what it holds, a
		// value per thread, and the match is by thread, as it was.
		m.currentG("exit"),
		mapLookup(m.answered, -104),
		asm.Instructions{
			asm.JEq.Imm(asm.R0, 0, "exit"),
			asm.LoadMem(asm.R8, asm.R0, 0, asm.DWord),
		},
		m.emit(asm.R7, StageBackendArrived, asm.R8),
		mapDelete(m.answered, -104),
		ret(),
	)
}

// requestStartProgram reports StageStart and, when this thread has just
// read a gateway connection, StageArrival with the data's arrival time, and
// binds the connection to the call.
func (m *probeMaps) requestStartProgram() asm.Instructions {
	return join(
		asm.Instructions{
			asm.LoadMem(asm.R7, asm.R1, regsAX, asm.DWord),
			asm.FnKtimeGetNs.Call(),
			asm.Mov.Reg(asm.R9, asm.R0),
			asm.FnGetCurrentPidTgid.Call(),
			asm.StoreMem(asm.R10, -40, asm.R0, asm.DWord),
		},
		m.rememberSelf(),
		m.currentG("start"),
		mapLookup(m.pending, -104),
		asm.Instructions{
			asm.JEq.Imm(asm.R0, 0, "start"),
			asm.LoadMem(asm.R8, asm.R0, 0, asm.DWord), // arrival time
			asm.LoadMem(asm.R1, asm.R0, 8, asm.DWord), // socket
			asm.StoreMem(asm.R10, -48, asm.R1, asm.DWord),
		},
		m.emit(asm.R7, StageArrival, asm.R8),
		asm.Instructions{asm.StoreMem(asm.R10, -56, asm.R7, asm.DWord)},
		mapUpdate(m.callOf, -48, -56, bpfAny),
		mapDelete(m.pending, -104),
		relabel(m.emit(asm.R7, StageStart, asm.R9), "start"),
		ret(),
	)
}

// relabel puts a symbol on the first instruction.
func relabel(insns asm.Instructions, sym string) asm.Instructions {
	insns[0] = insns[0].WithSymbol(sym)
	return insns
}

// readableProgram (sock:sk_data_ready) notes when data arrives on a
// gateway connection; the first arrival since the last read counts. On
// an outbound socket (sendProgram) it keeps the time of the first data
// since the gateway last read it.
func (m *probeMaps) readableProgram(portOff int32) asm.Instructions {
	return join(
		asm.Instructions{asm.LoadMem(asm.R7, asm.R1, argSock, asm.DWord)},
		m.whichSocket(asm.R7, portOff, "exit", "answer"),
		asm.Instructions{
			asm.FnKtimeGetNs.Call(),
			asm.StoreMem(asm.R10, -16, asm.R0, asm.DWord),
			asm.StoreMem(asm.R10, -8, asm.R7, asm.DWord),
		},
		mapUpdate(m.arrival, -8, -16, bpfNoExist),
		ret(),
		// Another socket: one the gateway sends on (outbound), with no
		// data waiting unread? Then this is the first since its last send
		// or read.
		asm.Instructions{asm.StoreMem(asm.R10, -8, asm.R7, asm.DWord).WithSymbol("answer")},
		mapLookup(m.outbound, -8),
		asm.Instructions{
			asm.JEq.Imm(asm.R0, 0, "exit"),
			asm.Mov.Reg(asm.R6, asm.R0),
			asm.LoadMem(asm.R1, asm.R6, 0, asm.DWord),
			asm.JGT.Imm(asm.R1, outboundRead, "exit"), // an arrival waits unread
			asm.FnKtimeGetNs.Call(),
			asm.StoreMem(asm.R6, 0, asm.R0, asm.DWord),
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	)
}

// recvProgram (sock:sock_recv_length) hands a gateway connection's arrival
// time to the thread reading it, and an outbound socket's to the gateway
// thread reading it (answered, for firstByteProgram). A read of the end of the stream forgets
// the connection's arrival instead: the client's FIN wakes the socket like
// data, and an arrival left behind would be claimed by the next connection
// the kernel places at the same address (a client opening a connection per
// call, as curl does, then showed the time since its previous connection
// as the next request's receive stage).
func (m *probeMaps) recvProgram(portOff int32) asm.Instructions {
	return join(
		asm.Instructions{
			asm.LoadMem(asm.R7, asm.R1, argSock, asm.DWord),
			asm.LoadMem(asm.R8, asm.R1, argRet, asm.DWord),
			asm.JSLT.Imm32(asm.R8, 0, "exit"), // an error: nothing read
			asm.LoadMem(asm.R1, asm.R1, argFlags, asm.DWord),
			asm.And.Imm(asm.R1, msgPeek),
			asm.JNE.Imm(asm.R1, 0, "exit"), // a peek (the pool's liveness check) reads nothing
		},
		m.gatewayThread("exit"), // only the gateway's reads matter
		m.currentG("exit"),      // the goroutine reading, at -104
		m.whichSocket(asm.R7, portOff, "exit", "outbound"),
		asm.Instructions{
			asm.StoreMem(asm.R10, -8, asm.R7, asm.DWord),
			asm.JEq.Imm32(asm.R8, 0, "forget"), // the end of the stream
		},
		mapLookup(m.arrival, -8),
		asm.Instructions{
			asm.JEq.Imm(asm.R0, 0, "exit"),
			asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
			asm.StoreMem(asm.R10, -32, asm.R1, asm.DWord), // value: time
			asm.StoreMem(asm.R10, -24, asm.R7, asm.DWord), // value: socket
		},
		mapUpdate(m.pending, -104, -32, bpfAny),
		relabel(mapDelete(m.arrival, -8), "forget"),
		ret(),
		// Another socket: a gateway thread reading an outbound socket takes
		// the arrival of the data it reads (or forgets the socket at its
		// end) and the socket waits for data again. A read that finds no
		// arrival (the socket not marked, or its data come before the mark)
		// drops what the thread held from an earlier read, so that its
		// call's marker does not take that for the answer.
		asm.Instructions{asm.StoreMem(asm.R10, -8, asm.R7, asm.DWord).WithSymbol("outbound")},
		asm.Instructions{asm.LoadMapPtr(asm.R1, m.outbound.FD())},
		stackPtr(asm.R2, -8),
		asm.Instructions{
			asm.JEq.Imm32(asm.R8, 0, "forget outbound"), // the end of the stream
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "unanswered"),
			asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
			asm.JEq.Imm(asm.R1, outboundSent, "unanswered"), // nothing arrived since the send: it came before
			asm.JEq.Imm(asm.R1, outboundRead, "exit"),       // more of what was taken
			asm.Mov.Imm(asm.R2, outboundRead),
			asm.StoreMem(asm.R0, 0, asm.R2, asm.DWord),
			asm.StoreMem(asm.R10, -24, asm.R1, asm.DWord),
		},
		mapUpdate(m.answered, -104, -24, bpfAny),
		asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
			asm.FnMapDeleteElem.Call().WithSymbol("forget outbound"),
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
		relabel(mapDelete(m.answered, -104), "unanswered"),
		asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	)
}

// sendProgram (sock:sock_send_length) reports the first send on a call's
// connection as StageReplyOut. A send by a goroutine also drops what it read
// but no call claimed (a request that is not a marked call). A gateway
// thread's send on another socket marks it outbound (readableProgram).
func (m *probeMaps) sendProgram(portOff int32) asm.Instructions {
	return join(
		asm.Instructions{
			asm.LoadMem(asm.R6, asm.R1, argSock, asm.DWord),
			asm.LoadMem(asm.R8, asm.R1, argRet, asm.DWord),
			asm.JSLE.Imm32(asm.R8, 0, "exit"), // nothing sent
		},
		m.gatewayThread("exit"), // only the gateway's sends matter
		m.whichSocket(asm.R6, portOff, "exit", "request"),
		m.currentG("reply"),
		mapDelete(m.pending, -104),
		asm.Instructions{asm.StoreMem(asm.R10, -48, asm.R6, asm.DWord).WithSymbol("reply")},
		mapLookup(m.callOf, -48),
		asm.Instructions{
			asm.JEq.Imm(asm.R0, 0, "exit"),
			asm.LoadMem(asm.R7, asm.R0, 0, asm.DWord),
			asm.FnKtimeGetNs.Call(),
			asm.Mov.Reg(asm.R9, asm.R0),
		},
		m.emit(asm.R7, StageReplyOut, asm.R9),
		mapDelete(m.callOf, -48),
		ret(),
		// Another socket: the gateway's thread sending on it marks it as
		// outbound and awaiting data: whatever arrived before this send
		// (a FIN left unread, the data of a socket freed at this address)
		// is not an answer to it. An existing mark is reset in place, so
		// that only a new socket takes an entry.
		asm.Instructions{asm.StoreMem(asm.R10, -48, asm.R6, asm.DWord).WithSymbol("request")},
		mapLookup(m.outbound, -48),
		asm.Instructions{
			asm.JEq.Imm(asm.R0, 0, "mark"),
			asm.Mov.Imm(asm.R1, 0),
			asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
			asm.Mov.Imm(asm.R1, 0).WithSymbol("mark"),
			asm.StoreMem(asm.R10, -56, asm.R1, asm.DWord),
		},
		mapUpdate(m.outbound, -48, -56, bpfAny),
		asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	)
}

func loadProgram(name string, typ cebpf.ProgramType, insns asm.Instructions) (*cebpf.Program, error) {
	prog, err := cebpf.NewProgramWithOptions(&cebpf.ProgramSpec{
		Name: name, Type: typ, License: "GPL", Instructions: insns,
	}, cebpf.ProgramOptions{})
	if err != nil {
		return nil, fmt.Errorf("load program %s: %w", name, err)
	}
	return prog, nil
}

// localPortOffset finds, in the kernel's BTF, the offset of the local port
// (struct sock_common's skc_num) in struct sock.
func localPortOffset() (int32, error) {
	return kernelOffset("sock", "__sk_common", "sock_common", "skc_num")
}

// fsBaseOffset finds, in the kernel's BTF, the offset of the thread's FS
// base (struct task_struct's thread.fsbase, x86-64) in struct task_struct.
func fsBaseOffset() (int32, error) {
	return kernelOffset("task_struct", "thread", "thread_struct", "fsbase")
}

// kernelOffset finds, in the kernel's BTF, the offset in struct outer of
// field, a member of struct inner, which is outer's member.
func kernelOffset(outer, member, inner, field string) (int32, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return 0, fmt.Errorf("kernel BTF: %w", err)
	}
	var off uint32
	for _, step := range [][2]string{{outer, member}, {inner, field}} {
		var st *btf.Struct
		if err := spec.TypeByName(step[0], &st); err != nil {
			return 0, fmt.Errorf("kernel BTF: struct %s: %w", step[0], err)
		}
		o, ok := memberOffset(st, step[1])
		if !ok {
			return 0, fmt.Errorf("kernel BTF: struct %s has no %s", step[0], step[1])
		}
		off += o
	}
	return int32(off), nil
}

// memberOffset finds a member by name in a struct or union, looking into
// anonymous members, and returns its byte offset.
func memberOffset(t btf.Type, name string) (uint32, bool) {
	var members []btf.Member
	switch t := t.(type) {
	case *btf.Struct:
		members = t.Members
	case *btf.Union:
		members = t.Members
	default:
		return 0, false
	}
	for _, mb := range members {
		if mb.Name == name {
			return mb.Offset.Bytes(), true
		}
		if mb.Name == "" {
			if off, ok := memberOffset(btf.UnderlyingType(mb.Type), name); ok {
				return mb.Offset.Bytes() + off, true
			}
		}
	}
	return 0, false
}
