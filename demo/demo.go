// Package demo holds the demo backends of the seeded demo tenant: five
// in-memory "apps" (drive, jira, slack, jenkins, gitlab) and a database, each
// an MCP tool server with realistic seeded state, served over MCP Streamable
// HTTP.
//
// The backends do no authorization of their own: they are what sits behind
// the gateway, and the gateway decides every tools/call. Some of their state
// is deliberately sensitive (fake production secrets in drive, a credential
// rotation job in jenkins) so that policy has something real to protect.
//
// Each tool returns a human-readable text content block and the same data as
// structured content (the tool's output schema is derived from a Go struct).
// Bad arguments produce a tool error result (isError: true), never a protocol
// error.
package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Version is reported in each demo server's implementation info.
const Version = "0.1.0"

// builders maps a backend name to its server constructor.
var builders = map[string]func() *mcp.Server{
	"database": newDatabaseServer,
	"drive":    newDriveServer,
	"gitlab":   newGitlabServer,
	"jenkins":  newJenkinsServer,
	"jira":     newJiraServer,
	"slack":    newSlackServer,
}

// Names returns the backend names, sorted:
// "database", "drive", "gitlab", "jenkins", "jira", "slack".
func Names() []string {
	names := make([]string, 0, len(builders))
	for n := range builders {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// NewServer returns a fresh MCP server, with its own freshly seeded state,
// for a backend name. Unknown names are an error.
func NewServer(name string) (*mcp.Server, error) {
	b, ok := builders[name]
	if !ok {
		return nil, fmt.Errorf("demo: unknown backend %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	return b(), nil
}

// Handler returns a Streamable HTTP handler serving one fresh server for
// name. All sessions of the handler share that server, hence one state: an
// issue created in one session can be read in another. Sessions are stateful
// (Mcp-Session-Id), which every protocol revision from 2025-03-26 on accepts.
//
// The handler keeps the SDK's DNS-rebinding protection: a request that
// arrives on a loopback address must carry a loopback Host header.
//
// Responses to POSTs are SSE streams (text/event-stream), the SDK default;
// use NewHandler with JSONResponse for plain application/json bodies.
func Handler(name string) (http.Handler, error) {
	return NewHandler(name, nil)
}

// NewHandler is Handler with the SDK's Streamable HTTP options (nil for the
// defaults), e.g. &mcp.StreamableHTTPOptions{JSONResponse: true}.
func NewHandler(name string, opts *mcp.StreamableHTTPOptions) (http.Handler, error) {
	srv, err := NewServer(name)
	if err != nil {
		return nil, err
	}
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, opts), nil
}

// Running is one backend listening on its own address.
type Running struct {
	// Name is the backend name, e.g. "jira".
	Name string
	// URL is the MCP endpoint, e.g. "http://127.0.0.1:40123/mcp".
	URL string
	// Close stops the listener and ends open connections. Open streams
	// (a client's standalone SSE GET, say) are given until ctx is done, at
	// most a few seconds, to finish; then they are cut.
	Close func(ctx context.Context) error
}

// shutdownGrace caps how long Close waits for open connections.
const shutdownGrace = 3 * time.Second

// Start serves backend name on addr ("127.0.0.1:0" picks a free port) with
// the MCP endpoint at /mcp (and a liveness probe at /healthz). ctx governs
// only the start; stop the backend with Running.Close.
func Start(ctx context.Context, name, addr string) (*Running, error) {
	h, err := Handler(name)
	if err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("demo %s: listen %s: %w", name, addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", h)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "ok %s\n", name)
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()

	var once sync.Once
	var closeErr error
	closeFn := func(ctx context.Context) error {
		once.Do(func() {
			if ctx == nil {
				ctx = context.Background()
			}
			ctx, cancel := context.WithTimeout(ctx, shutdownGrace)
			defer cancel()
			if err := hs.Shutdown(ctx); err != nil {
				// Long-lived streams did not finish in time: cut them.
				if cerr := hs.Close(); cerr != nil && !errors.Is(cerr, http.ErrServerClosed) {
					closeErr = cerr
				}
			}
		})
		return closeErr
	}
	return &Running{
		Name:  name,
		URL:   "http://" + ln.Addr().String() + "/mcp",
		Close: closeFn,
	}, nil
}

// StartAll starts every backend, each on its own 127.0.0.1 port, in Names
// order. On error, the backends already started are closed.
func StartAll(ctx context.Context) ([]*Running, error) {
	var all []*Running
	for _, n := range Names() {
		r, err := Start(ctx, n, "127.0.0.1:0")
		if err != nil {
			for _, s := range all {
				_ = s.Close(context.Background())
			}
			return nil, err
		}
		all = append(all, r)
	}
	return all, nil
}

// --- helpers shared by the backends ---

func newServer(name, title, instructions string) *mcp.Server {
	return newServerWith(name, title, instructions, &mcp.ServerOptions{})
}

// newServerWith is newServer with more of the SDK's server options.
func newServerWith(name, title, instructions string, opts *mcp.ServerOptions) *mcp.Server {
	opts.Instructions = instructions
	return mcp.NewServer(&mcp.Implementation{
		Name:    "pbac-demo-" + name,
		Title:   title,
		Version: Version,
	}, opts)
}

func ptr[T any](v T) *T { return &v }

// readOnly annotates a tool that only reads its backend's state.
func readOnly(title string) *mcp.ToolAnnotations {
	return &mcp.ToolAnnotations{
		Title:           title,
		ReadOnlyHint:    true,
		DestructiveHint: ptr(false),
		IdempotentHint:  true,
		OpenWorldHint:   ptr(false),
	}
}

// writes annotates a tool that changes its backend's state. destructive
// means it changes or removes existing state (rather than only adding);
// idempotent means repeating the same call has no further effect.
func writes(title string, destructive, idempotent bool) *mcp.ToolAnnotations {
	return &mcp.ToolAnnotations{
		Title:           title,
		ReadOnlyHint:    false,
		DestructiveHint: ptr(destructive),
		IdempotentHint:  idempotent,
		OpenWorldHint:   ptr(false),
	}
}

// textResult is a result whose text content is the human-readable rendering;
// the typed output becomes the structured content.
func textResult(format string, args ...any) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf(format, args...)}}}
}

// textLines is textResult for text assembled from lines.
func textLines(lines []string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: strings.Join(lines, "\n")}}}
}

// now is the timestamp of new state, in RFC 3339 UTC.
func now() string { return time.Now().UTC().Format(time.RFC3339) }

// required reports a tool error for an empty required argument.
func required(name, value string) error {
	if strings.TrimSpace(value) == "" {
		return fmt.Errorf("argument %q is required and must not be empty", name)
	}
	return nil
}
