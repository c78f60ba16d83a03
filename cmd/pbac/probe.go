package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbac-gateway/pbac/ebpf"
	"github.com/pbac-gateway/pbac/gateway"
)

// probeOptions are pbac probe's flags.
type probeOptions struct {
	pid                int
	ports              []uint
	executable         string
	interval, duration time.Duration
	json, noSockets    bool
	stages             bool
	logLevel           string
}

// probeMaxDuration bounds a probe run.
const probeMaxDuration = 24 * time.Hour

func newProbeCommand() *cobra.Command {
	o := probeOptions{}
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Measure a running gateway's per-call overhead from the kernel (eBPF; root or CAP_BPF + CAP_PERFMON)",
		Long: `Attaches eBPF programs to a running gateway and measures, per call forwarded
to a backend, from outside the gateway's code:

  ingress   request in → request out: from the client's request arriving on
            the gateway's connection to the request being handed to the
            gateway's forwarding client
  egress    response in → reply out: from that client returning with the
            backend's response headers to the reply leaving on the
            client's connection
  overhead  ingress + egress: what the gateway adds to the call
  backend   request out → response in: the backend's own time, with the
            forwarding client's write of the request and read of the
            response headers (a few µs) inside it

with live p50/p99 every --interval and a per-stage breakdown (receive,
prepare, client out, backend, client in, send; with --stages also
authenticate, decide, respond). A gateway older than the client's markers
is measured from forward to response headers instead. Entry uprobes on the
gateway's marker functions give the stages inside the process, with each
call's id read from the Go register ABI; the sock:sk_data_ready,
sock_recv_length and sock_send_length tracepoints on the gateway's listening
ports give the request's arrival and the reply's departure.

It needs Linux on amd64, root or CAP_BPF + CAP_PERFMON, and kernel BTF
(/sys/kernel/btf/vmlinux); without them it says exactly what is missing. The
gateway's executable needs its symbol table (go build keeps it; go run and
-ldflags=-s do not): pbac up --probe probes its own process without one.
Detaching leaves the gateway as it was.`,
		Example: `  sudo pbac probe --pid $(pgrep -f 'pbac up')
  sudo pbac probe --pid 4242 --duration 30s --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.pid <= 0 {
				return errors.New("--pid: name the gateway's process id (pbac up's)")
			}
			if o.interval <= 0 {
				return fmt.Errorf("--interval %s: must be more than 0", o.interval)
			}
			if o.duration < 0 || o.duration > probeMaxDuration {
				return fmt.Errorf("--duration %s: must be 0 (until interrupted) to %s", o.duration, probeMaxDuration)
			}
			ports := make([]uint16, 0, len(o.ports))
			for _, p := range o.ports {
				if p == 0 || p > 65535 {
					return fmt.Errorf("--port %d: not a TCP port", p)
				}
				ports = append(ports, uint16(p))
			}
			return runProbe(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o, ports, newLogger(o.logLevel))
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.pid, "pid", 0, "the gateway's process id")
	f.UintSliceVar(&o.ports, "port", nil, "the gateway's listening port(s) for the socket stages (default: every TCP port the process listens on)")
	f.StringVar(&o.executable, "executable", "", "the gateway's executable (default /proc/<pid>/exe)")
	f.DurationVar(&o.interval, "interval", 5*time.Second, "print live p50/p99 this often")
	f.DurationVar(&o.duration, "duration", 0, "stop after this long and print the summary (default: until interrupted)")
	f.BoolVar(&o.json, "json", false, "print the final summary as JSON")
	f.BoolVar(&o.stages, "stages", false, "also attach the markers of the per-stage breakdown (authenticate, decide, respond): three more uprobe hits per call")
	f.BoolVar(&o.noSockets, "no-sockets", false, "measure between the gateway's markers only, without the socket tracepoints")
	f.StringVar(&o.logLevel, "log-level", "warn", "debug, info, warn or error")
	return cmd
}

func runProbe(ctx context.Context, stdout, stderr io.Writer, o probeOptions, ports []uint16, log *slog.Logger) error {
	p, err := ebpf.Attach(ebpf.Options{PID: o.pid, Executable: o.executable, Ports: ports, NoSockets: o.noSockets, Stages: o.stages, Logger: log})
	if err != nil {
		return err
	}
	defer p.Close()
	fmt.Fprintf(stderr, "probe: attached to process %d", p.PID())
	if ps := p.Ports(); len(ps) > 0 {
		fmt.Fprintf(stderr, " (socket stages on ports %v)", ps)
	} else {
		fmt.Fprint(stderr, " (between its markers only)")
	}
	fmt.Fprintln(stderr, "; Ctrl-C to stop")
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			if s := p.Window(); s.Calls > 0 {
				if err := s.WriteText(stderr, time.Now().Format("15:04:05")+" last "+o.interval.String()); err != nil {
					return err
				}
			}
		}
	}
	if err := p.Close(); err != nil {
		return err
	}
	total := p.Total()
	if o.json {
		b, err := json.MarshalIndent(total, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	return total.WriteText(stdout, "total")
}

// probeLogInterval is how often pbac up --probe logs the probe's figures.
const probeLogInterval = 10 * time.Second

// startSelfProbe attaches the probe to this process's gateway, listening at
// addr, and logs its figures every probeLogInterval while ctx lasts. When
// the probe cannot run it logs why and the gateway runs on unaffected. stop
// detaches it.
func startSelfProbe(ctx context.Context, log *slog.Logger, addr net.Addr) (stop func()) {
	p, err := attachSelfProbe(addr, log)
	if err != nil {
		log.Warn("the eBPF probe is off; the gateway runs without it", "err", err)
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(probeLogInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if s := p.Window(); s.Calls > 0 {
					log.Info("probe", "calls", s.Calls, "overhead_p50_us", s.Overhead.P50, "overhead_p99_us", s.Overhead.P99,
						"ingress_p50_us", s.Ingress.P50, "ingress_p99_us", s.Ingress.P99,
						"egress_p50_us", s.Egress.P50, "egress_p99_us", s.Egress.P99)
				}
			}
		}
	}()
	log.Info("the eBPF probe is attached to this gateway", "ports", p.Ports())
	return func() {
		cancel()
		<-done
		_ = p.Close()
	}
}

// attachSelfProbe attaches the probe to this process, finding the markers
// by address (go run and go test leave out the symbol table) and the
// gateway's connections by the port of addr.
func attachSelfProbe(addr net.Addr, log *slog.Logger) (*ebpf.Probe, error) {
	o := ebpf.Options{Addresses: gateway.ProbeMarkers(), Logger: log}
	if ta, ok := addr.(*net.TCPAddr); ok && ta.Port > 0 {
		o.Ports = []uint16{uint16(ta.Port)}
	} else {
		o.NoSockets = true
	}
	return ebpf.Attach(o)
}
