// Package stdio is the stdio bridge: it serves an MCP server that speaks
// over stdin and stdout (a command) as a Streamable HTTP endpoint on
// 127.0.0.1, so the gateway forwards to it like to any other backend.
//
// It is three parts: process supervision (process.go: one process per
// session in its own process group, its environment, its output and its
// end), dispatch (dispatch.go: sessions shared fairly between agents under
// quotas, and the process's messages routed to the HTTP requests waiting
// for them) and the HTTP transport (transport.go). Every message, in both
// directions, is read by the one JSON-RPC parser (package jsonrpc).
// Clients get short, generic errors; what went wrong with the process
// (exec, stdin, exit status) goes to the log. Process groups need a unix
// system: elsewhere Start fails with ErrUnsupported.
package stdio

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Config.
const (
	// DefaultSessions is how many processes one bridge runs at once when
	// Config does not say.
	DefaultSessions = 16
	// DefaultSessionsPerAgent is how many of one stdio backend's
	// processes one agent may hold when Config does not say.
	DefaultSessionsPerAgent = 4
)

// Limits and defaults of the stdio bridge.
const (
	defaultTimeout = 60 * time.Second
	defaultIdle    = 30 * time.Minute
	// retryAfter is the Retry-After (seconds) of a refused initialize.
	retryAfter = "5"
	// maxBody bounds one POSTed JSON-RPC message.
	maxBody = 4 << 20
	// maxLine bounds one line (one message) the process writes to stdout.
	maxLine = 16 << 20
	// maxDepth bounds the nesting of a message, in both directions: no
	// lower than what encoding/json, the bridge's first parser, allowed
	// (the gateway in front bounds its clients' far lower).
	maxDepth = 10000
	// streamQueue bounds the server messages queued for one POST's
	// stream; backlog those queued for the GET stream (kept while no GET
	// stream is open, oldest dropped first).
	streamQueue = 1024
	backlog     = 256
	// killGrace is how long a process has, after its stdin is closed
	// and its group got SIGTERM, before the group gets SIGKILL.
	killGrace = 2 * time.Second
	// linesPerSecond rate-limits what a process's stderr (and stray
	// non-JSON stdout) puts in the log; logLineMax truncates a line.
	linesPerSecond = 50
	logLineMax     = 4 << 10
	keepAlive      = 25 * time.Second
	writeTimeout   = 30 * time.Second
)

var (
	errEnded     = errors.New("the stdio session has ended")
	errDuplicate = errors.New("a request with this id is already in flight in this session")
	errFull      = errors.New("every stdio session is in use")
	errAgentFull = errors.New("this agent holds as many stdio sessions as one agent may, all of them busy")
	errClosed    = errors.New("the stdio backend is closing")
	// errStdinBusy is a write to stdin that wrote nothing before its
	// deadline: the process is not reading its input now.
	errStdinBusy = errors.New("the stdio process is not reading its input")
	errTooMany   = errors.New("too many requests of this session in flight")
	// errNotStarted stands, for the client, for a process that could not
	// be started (the cause is logged).
	errNotStarted = errors.New("the stdio process could not be started")
)

// ErrUnsupported is Start's error on a system without process groups (not
// unix): stdio backends need one.
var ErrUnsupported = errors.New("stdio backends need a unix system (process groups)")

// OwnerHeader is the header on which the gateway names, to a stdio
// bridge, the opaque key of the agent a request is for (Backend.OwnerHeader).
// The bridge shares its processes by it: requests without it count as one
// agent.
const OwnerHeader = "Pbac-Owner"

// Config describes one stdio MCP server command.
type Config struct {
	Name    string
	Command []string // argv; Command[0] resolved with exec.LookPath
	// Env is extra KEY=VALUE (credentials for the backend come from gateway
	// config). The process inherits only PATH, HOME, USER, LOGNAME, SHELL,
	// LANG, LANGUAGE, TZ, TMPDIR, TERM and LC_* from the gateway; Env
	// entries override those.
	Env    []string
	Dir    string
	Logger *slog.Logger
	// RequestTimeout (default 60 s) is how long a POST waits for its response.
	RequestTimeout time.Duration
	// MaxSessions (default 16) bounds the processes alive at once.
	MaxSessions int
	// MaxSessionsPerAgent (default DefaultSessionsPerAgent) bounds the
	// processes one agent (OwnerHeader) holds. An initialize beyond it
	// ends that agent's least recently used session that is not serving a
	// request, or, when every one is busy, is refused with 429 and
	// Retry-After. When all MaxSessions are taken, an agent holding fewer
	// than another gets a slot by ending that other agent's least recently
	// used session not serving a request; else the initialize is refused
	// with 503 and Retry-After. So one agent never starves the others.
	MaxSessionsPerAgent int
	// IdleTimeout (default 30 min; negative: never) ends a session, and its
	// process, after that long with no request, no pending response and no
	// open GET stream: a client that vanished without DELETE must not hold
	// one of the MaxSessions forever.
	IdleTimeout time.Duration
	// Shared runs one process for every session (shared.go), for a server
	// that keeps no state between requests: MaxSessions does not apply,
	// MaxSessionsPerAgent bounds each agent's sessions, and what the
	// process sends that belongs to no one request is not passed on (but
	// for list_changed, which every session gets).
	Shared bool
}

// Bridge serves one stdio MCP server command as a Streamable HTTP
// endpoint on 127.0.0.1, so that the gateway forwards to it like to any
// other backend.
//
// Each session is one process: a POST of initialize without Mcp-Session-Id
// starts it, DELETE ends it. A process that exits ends its session; requests
// naming the session are then answered 404 and the client re-initializes,
// which starts a fresh process.
type Bridge struct {
	cfg  Config
	path string   // resolved Command[0]
	env  []string // the processes' environment
	log  *slog.Logger
	url  string
	// endpoint is the URL's path: a secret of the bridge's own before
	// /mcp, so that only who was given the URL (the gateway) reaches the
	// processes; any other process on the host, or in the same network
	// namespace (a pod's other containers), that finds the loopback port
	// gets 404 and never the server, its tools or the credentials in its
	// environment, past policy.
	endpoint string
	srv      *http.Server

	mu       sync.Mutex
	sessions map[string]*session   // by session id, live ones only
	procs    map[*session]struct{} // every session whose process is not yet reaped
	closed   bool
	reaped   sync.WaitGroup // one per session in procs
	stop     chan struct{}  // ends the idle reaper
	stopOnce sync.Once
	// bg are the listener's and the idle reaper's goroutines; Close joins
	// them.
	bg sync.WaitGroup

	// Shared mode (shared.go): the one process (b.mu), its initialize
	// result, the client sessions it serves; sharedMu serialises starting
	// it; wireSeq numbers the ids the bridge gives requests there.
	sharedMu   sync.Mutex
	shared     *session
	sharedInit json.RawMessage
	views      map[string]*view
	wireSeq    atomic.Int64
}

// Start listens on 127.0.0.1:0 and serves cfg's command there. ctx
// bounds only the start; the backend runs until Close.
func Start(ctx context.Context, cfg Config) (*Bridge, error) {
	if !processGroups {
		return nil, fmt.Errorf("stdio backend %s: %w", cfg.Name, ErrUnsupported)
	}
	if len(cfg.Command) == 0 || cfg.Command[0] == "" {
		return nil, errors.New("stdio backend: no command")
	}
	for _, kv := range cfg.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, fmt.Errorf("stdio backend %s: environment entry %q is not KEY=VALUE", cfg.Name, kv)
		}
	}
	name := cfg.Command[0]
	if cfg.Dir != "" && strings.ContainsRune(name, filepath.Separator) && !filepath.IsAbs(name) {
		name = filepath.Join(cfg.Dir, name)
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return nil, fmt.Errorf("stdio backend %s: %w", cfg.Name, err)
	}
	if path, err = filepath.Abs(path); err != nil {
		return nil, fmt.Errorf("stdio backend %s: %w", cfg.Name, err)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = defaultTimeout
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultSessions
	}
	if cfg.MaxSessionsPerAgent <= 0 {
		cfg.MaxSessionsPerAgent = DefaultSessionsPerAgent
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = defaultIdle
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("stdio backend %s: %w", cfg.Name, err)
	}
	b := &Bridge{
		cfg:      cfg,
		path:     path,
		env:      processEnv(os.Environ(), cfg.Env),
		log:      cfg.Logger.With("backend", cfg.Name),
		endpoint: "/" + rand.Text() + "/mcp",
		sessions: map[string]*session{},
		procs:    map[*session]struct{}{},
		views:    map[string]*view{},
		stop:     make(chan struct{}),
	}
	b.url = "http://" + ln.Addr().String() + b.endpoint
	b.srv = &http.Server{
		Handler: http.HandlerFunc(b.serveHTTP),
		// No ReadTimeout/WriteTimeout: responses are long-lived streams;
		// SSE writes carry their own deadlines.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(b.log.Handler(), slog.LevelWarn),
	}
	b.bg.Go(func() {
		if err := b.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.log.Error("stdio backend listener failed", "err", err)
		}
	})
	b.bg.Go(b.reapIdle)
	b.log.Info("stdio backend listening", "address", ln.Addr().String(), "command", path)
	return b, nil
}

// Processes is how many of the backend's processes run now (the ones
// ending included, until they are reaped).
func (b *Bridge) Processes() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.procs)
}

// URL is the Streamable HTTP endpoint, http://127.0.0.1:PORT/SECRET/mcp:
// whoever has it reaches the processes, so it is given to the gateway
// only (and not logged).
func (b *Bridge) URL() string { return b.url }

// Close ends every session, kills every process (SIGTERM to its process
// group, SIGKILL after a grace period or when ctx ends first), closes the
// listener and waits for the processes to be reaped.
func (b *Bridge) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	live := make([]*session, 0, len(b.sessions)+1)
	for _, s := range b.sessions {
		live = append(live, s)
	}
	if b.shared != nil {
		live = append(live, b.shared)
	}
	b.mu.Unlock()
	b.stopOnce.Do(func() { close(b.stop) })
	for _, s := range live {
		s.end("backend closing")
	}
	// Handlers return as their sessions end.
	err := b.srv.Shutdown(ctx)
	if err != nil {
		b.srv.Close()
	}
	b.bg.Wait() // Serve has returned; the reaper has seen stop
	done := make(chan struct{})
	go func() { b.reaped.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		b.mu.Lock()
		for s := range b.procs {
			s.signal(sigKill)
		}
		b.mu.Unlock()
		select {
		case <-done:
		case <-time.After(time.Second):
		}
		if err == nil {
			err = ctx.Err()
		}
	}
	return err
}

// newSessionID returns a fresh session id: 24 random bytes, base64url.
func newSessionID() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(errors.New("crypto/rand failed"))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// sessionHeader is the Streamable HTTP transport's session header.
const sessionHeader = "Mcp-Session-Id"
