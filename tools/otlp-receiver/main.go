// Command otlp-receiver runs the OpenTelemetry Collector's own OTLP
// receiver (go.opentelemetry.io/collector/receiver/otlpreceiver) on
// 127.0.0.1, over HTTP and gRPC, and prints every span it receives as one
// line of JSON: what an operator's collector would get from the gateway.
// The gateway's tests start it (internal/otlptest).
//
// It is its own Go module: the Collector's configuration packages need a
// version of github.com/gobwas/glob that OPA's cannot share one build with.
//
//	otlp-receiver [-http 127.0.0.1:0] [-grpc 127.0.0.1:0]
//
// The first line it prints is
//
//	OTLP http=http://127.0.0.1:<port> grpc=http://127.0.0.1:<port>
//
// It stops on SIGINT or SIGTERM, or when its standard input closes.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/receiver/receivertest"
)

// span is one received span as printed.
type span struct {
	Service       string         `json:"service"`
	Name          string         `json:"name"`
	Kind          string         `json:"kind"`
	TraceID       string         `json:"trace_id"`
	SpanID        string         `json:"span_id"`
	ParentID      string         `json:"parent_id,omitempty"`
	Start         time.Time      `json:"start"`
	End           time.Time      `json:"end"`
	Status        string         `json:"status"`
	StatusMessage string         `json:"status_message,omitempty"`
	Attrs         map[string]any `json:"attrs"`
}

func main() {
	httpAddr := flag.String("http", "127.0.0.1:0", "the OTLP/HTTP listen address (port 0: a free one)")
	grpcAddr := flag.String("grpc", "127.0.0.1:0", "the OTLP/gRPC listen address (port 0: a free one)")
	flag.Parse()
	if err := run(*httpAddr, *grpcAddr, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "otlp-receiver:", err)
		os.Exit(1)
	}
}

func run(httpAddr, grpcAddr string, out io.Writer) error {
	var err error
	if httpAddr, err = resolve(httpAddr); err != nil {
		return err
	}
	if grpcAddr, err = resolve(grpcAddr); err != nil {
		return err
	}
	var mu sync.Mutex
	enc := json.NewEncoder(out)
	sink, err := consumer.NewTraces(func(_ context.Context, td ptrace.Traces) error {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range flatten(td) {
			if err := enc.Encode(s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	f := otlpreceiver.NewFactory()
	cfg := f.CreateDefaultConfig().(*otlpreceiver.Config)
	cfg.Protocols.GRPC.GetOrInsertDefault().NetAddr.Endpoint = grpcAddr
	cfg.Protocols.HTTP.GetOrInsertDefault().ServerConfig.NetAddr.Endpoint = httpAddr
	ctx := context.Background()
	rcv, err := f.CreateTraces(ctx, receivertest.NewNopSettings(f.Type()), cfg, sink)
	if err != nil {
		return fmt.Errorf("create the receiver: %w", err)
	}
	if err := rcv.Start(ctx, componenttest.NewNopHost()); err != nil {
		return fmt.Errorf("start the receiver: %w", err)
	}
	mu.Lock()
	fmt.Fprintf(out, "OTLP http=http://%s grpc=http://%s\n", httpAddr, grpcAddr)
	mu.Unlock()

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	stdinClosed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stdinClosed)
	}()
	select {
	case <-stop:
	case <-stdinClosed:
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return rcv.Shutdown(sctx)
}

// resolve gives a free port to an address with port 0: the receiver's
// configuration needs the address before it listens.
func resolve(addr string) (string, error) {
	if !strings.HasSuffix(addr, ":0") {
		return addr, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func flatten(td ptrace.Traces) []span {
	var got []span
	rss := td.ResourceSpans()
	for i := range rss.Len() {
		rs := rss.At(i)
		service := ""
		if v, ok := rs.Resource().Attributes().Get("service.name"); ok {
			service = v.AsString()
		}
		sss := rs.ScopeSpans()
		for j := range sss.Len() {
			spans := sss.At(j).Spans()
			for k := range spans.Len() {
				s := spans.At(k)
				sp := span{
					Service: service, Name: s.Name(), Kind: strings.ToLower(strings.TrimPrefix(s.Kind().String(), "SPAN_KIND_")),
					TraceID: s.TraceID().String(), SpanID: s.SpanID().String(),
					Start: s.StartTimestamp().AsTime(), End: s.EndTimestamp().AsTime(),
					Status: s.Status().Code().String(), StatusMessage: s.Status().Message(),
					Attrs: s.Attributes().AsRaw(),
				}
				if p := s.ParentSpanID(); !p.IsEmpty() {
					sp.ParentID = p.String()
				}
				got = append(got, sp)
			}
		}
	}
	return got
}
