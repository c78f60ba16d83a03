// Package otlptest starts a real OTLP receiver for tests — the
// OpenTelemetry Collector's own otlpreceiver, built from tools/otlp-receiver
// (a module of its own) and run as a process on 127.0.0.1 — and reads the
// spans it receives.
package otlptest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Span is one span as the receiver got it.
type Span struct {
	Service       string         `json:"service"`
	Name          string         `json:"name"`
	Kind          string         `json:"kind"`
	TraceID       string         `json:"trace_id"`
	SpanID        string         `json:"span_id"`
	ParentID      string         `json:"parent_id"`
	Start         time.Time      `json:"start"`
	End           time.Time      `json:"end"`
	Status        string         `json:"status"`
	StatusMessage string         `json:"status_message"`
	Attrs         map[string]any `json:"attrs"`
}

// Attr is the attribute's value as text ("" when absent).
func (s Span) Attr(key string) string {
	v, ok := s.Attrs[key]
	if !ok {
		return ""
	}
	return fmt.Sprint(v)
}

// Receiver is a running receiver process.
type Receiver struct {
	// HTTP and GRPC are its endpoints' base URLs (http://127.0.0.1:port),
	// as OTEL_EXPORTER_OTLP_ENDPOINT takes them.
	HTTP, GRPC string

	mu    sync.Mutex
	spans []Span
	bad   []string
}

var firstLine = regexp.MustCompile(`^OTLP http=(\S+) grpc=(\S+)$`)

// Start builds and starts the receiver; the test's cleanup stops it.
func Start(t testing.TB) *Receiver {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "tools", "otlp-receiver")
	bin := filepath.Join(t.TempDir(), "otlp-receiver")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("otlptest: build the receiver in %s: %v\n%s", dir, err, out)
	}
	cmd := exec.Command(bin)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("otlptest: start the receiver: %v", err)
	}
	r := &Receiver{}
	ready := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.read(stdout, ready)
	}()
	t.Cleanup(func() {
		_ = stdin.Close() // the receiver stops when its input closes
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = cmd.Wait()
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.bad) > 0 {
			t.Errorf("otlptest: lines the receiver printed that are not spans:\n%s", strings.Join(r.bad, "\n"))
		}
	})
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("otlptest: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("otlptest: the receiver did not start in 30s")
	}
	return r
}

// read takes the endpoints from the first line, then a span per line.
func (r *Receiver) read(out io.Reader, ready chan<- error) {
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	if !sc.Scan() {
		ready <- fmt.Errorf("the receiver printed nothing: %v", sc.Err())
		return
	}
	m := firstLine.FindStringSubmatch(sc.Text())
	if m == nil {
		ready <- fmt.Errorf("the receiver's first line is %q", sc.Text())
		return
	}
	r.HTTP, r.GRPC = m[1], m[2]
	ready <- nil
	for sc.Scan() {
		var s Span
		err := json.Unmarshal(sc.Bytes(), &s)
		r.mu.Lock()
		if err != nil {
			r.bad = append(r.bad, sc.Text())
		} else {
			r.spans = append(r.spans, s)
		}
		r.mu.Unlock()
	}
}

// Spans are the spans received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.spans)
}

// Wait waits until done holds for the spans received, at most timeout,
// and returns them; the test fails if it never does.
func (r *Receiver) Wait(t testing.TB, timeout time.Duration, what string, done func([]Span) bool) []Span {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		spans := r.Spans()
		if done(spans) {
			return spans
		}
		if time.Now().After(deadline) {
			t.Fatalf("otlptest: after %v, still waiting for %s; received:\n%s", timeout, what, Tree(spans))
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Find returns the spans for which match holds.
func Find(spans []Span, match func(Span) bool) []Span {
	var out []Span
	for _, s := range spans {
		if match(s) {
			out = append(out, s)
		}
	}
	return out
}

// Tree renders spans as trees, one per trace, children under their parent
// in start order, each with its duration and the attributes named in show
// (all when show is empty).
func Tree(spans []Span, show ...string) string {
	ids := map[string]bool{}
	for _, s := range spans {
		ids[s.SpanID] = true
	}
	byParent := map[string][]Span{}
	var roots []Span
	for _, s := range spans {
		if s.ParentID == "" || !ids[s.ParentID] {
			roots = append(roots, s)
		} else {
			byParent[s.ParentID] = append(byParent[s.ParentID], s)
		}
	}
	byStart := func(a, b Span) int { return a.Start.Compare(b.Start) }
	slices.SortFunc(roots, byStart)
	var b strings.Builder
	var walk func(s Span, depth int)
	walk = func(s Span, depth int) {
		fmt.Fprintf(&b, "%s%s [%s] %v", strings.Repeat("  ", depth), s.Name, s.Kind, s.End.Sub(s.Start).Round(time.Microsecond))
		if s.Status != "" && s.Status != "Unset" {
			fmt.Fprintf(&b, " status=%s", s.Status)
		}
		keys := make([]string, 0, len(s.Attrs))
		for k := range s.Attrs {
			if len(show) == 0 || slices.Contains(show, k) {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=%v", k, s.Attrs[k])
		}
		b.WriteByte('\n')
		kids := byParent[s.SpanID]
		slices.SortFunc(kids, byStart)
		for _, k := range kids {
			walk(k, depth+1)
		}
	}
	for _, r := range roots {
		parent := "none"
		if r.ParentID != "" {
			parent = r.ParentID + " (the caller's)"
		}
		fmt.Fprintf(&b, "trace %s, service %s, parent span %s\n", r.TraceID, r.Service, parent)
		walk(r, 1)
	}
	return b.String()
}
