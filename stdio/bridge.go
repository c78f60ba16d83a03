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
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pbac-gateway/pbac/jsonrpc"
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
	srv  *http.Server

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
		url:      "http://" + ln.Addr().String() + "/mcp",
		sessions: map[string]*session{},
		procs:    map[*session]struct{}{},
		stop:     make(chan struct{}),
	}
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
	b.log.Info("stdio backend listening", "url", b.url, "command", path)
	return b, nil
}

// URL is the Streamable HTTP endpoint: http://127.0.0.1:PORT/mcp.
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
	live := make([]*session, 0, len(b.sessions))
	for _, s := range b.sessions {
		live = append(live, s)
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

// reapIdle ends sessions idle for longer than IdleTimeout.
func (b *Bridge) reapIdle() {
	idle := b.cfg.IdleTimeout
	if idle < 0 {
		return
	}
	every := min(max(idle/4, 10*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case now := <-t.C:
			b.mu.Lock()
			var stale []*session
			for _, s := range b.sessions {
				if s.idleFor(now) > idle {
					stale = append(stale, s)
				}
			}
			b.mu.Unlock()
			for _, s := range stale {
				s.end("idle")
			}
		}
	}
}

// newSession reserves a session slot for owner and starts its process,
// first ending a session to make room when the quotas say so (see
// Config.MaxSessionsPerAgent).
func (b *Bridge) newSession(owner string) (*session, int, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, http.StatusServiceUnavailable, errClosed
	}
	victim, status, err := b.makeRoom(owner, time.Now())
	if err != nil {
		b.mu.Unlock()
		return nil, status, err
	}
	if victim != nil {
		// Forgotten now, so that its slot is this one's; ended below.
		delete(b.sessions, victim.id)
	}
	s := &session{
		b:          b,
		owner:      owner,
		id:         newSessionID(),
		pending:    map[string]*pendingCall{},
		standalone: newMailbox(backlog),
		lastUsed:   time.Now(),
		done:       make(chan struct{}),
		exited:     make(chan struct{}),
		outDone:    make(chan struct{}),
		errDone:    make(chan struct{}),
	}
	s.log = b.log.With("session", s.id[:8])
	b.sessions[s.id] = s
	b.procs[s] = struct{}{}
	b.reaped.Add(1)
	b.mu.Unlock()
	if victim != nil {
		victim.log.Info("stdio session ended to make room", "for_owner", owner[:min(len(owner), 8)], "owner", victim.owner[:min(len(victim.owner), 8)])
		victim.end("ended to make room for another session (stdio session quota)")
	}
	if err := s.start(); err != nil {
		s.end("start failed")
		b.mu.Lock()
		delete(b.procs, s)
		b.mu.Unlock()
		close(s.exited)
		b.reaped.Done()
		b.log.Error("stdio backend could not start", "err", err)
		return nil, http.StatusBadGateway, errNotStarted
	}
	return s, 0, nil
}

// makeRoom decides whether owner may start a session now: nil and no
// victim when there is room; a victim to end when the owner is at its quota
// (its own least recently used idle session) or the bridge is full (the
// least recently used idle session of the agent holding the most, when it
// holds at least two more than owner); else the status and error to refuse
// with. b.mu is held.
func (b *Bridge) makeRoom(owner string, now time.Time) (*session, int, error) {
	held := map[string][]*session{}
	for _, s := range b.sessions {
		held[s.owner] = append(held[s.owner], s)
	}
	mine := len(held[owner])
	if mine >= b.cfg.MaxSessionsPerAgent {
		if v := leastRecentlyUsedIdle(held[owner], now); v != nil {
			return v, 0, nil
		}
		return nil, http.StatusTooManyRequests, errAgentFull
	}
	if len(b.sessions) < b.cfg.MaxSessions {
		return nil, 0, nil
	}
	// Full: take from the agents holding the most, while they hold at
	// least two more than owner (then sharing evens out, it never swings).
	others := make([]string, 0, len(held))
	for o, ss := range held {
		if o != owner && len(ss) >= mine+2 {
			others = append(others, o)
		}
	}
	slices.SortFunc(others, func(x, y string) int { return len(held[y]) - len(held[x]) })
	for _, o := range others {
		if v := leastRecentlyUsedIdle(held[o], now); v != nil {
			return v, 0, nil
		}
	}
	return nil, http.StatusServiceUnavailable, errFull
}

// leastRecentlyUsedIdle is the session of ss last used longest ago among
// those serving no request (an open GET stream does not count: ending the
// session ends it), or nil.
func leastRecentlyUsedIdle(ss []*session, now time.Time) *session {
	var lru *session
	var lruIdle time.Duration
	for _, s := range ss {
		idle, ok := s.evictable(now)
		if ok && (lru == nil || idle > lruIdle) {
			lru, lruIdle = s, idle
		}
	}
	return lru
}

func (b *Bridge) session(id string) *session {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sessions[id]
}

func (s *session) register(key string, c *pendingCall) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return errEnded
	}
	if _, dup := s.pending[key]; dup {
		return errDuplicate
	}
	s.seq++
	c.seq = s.seq
	s.pending[key] = c
	return nil
}

func (s *session) unregister(key string, c *pendingCall) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending[key] == c {
		delete(s.pending, key)
	}
}

// dispatch routes one message from the process: a response to the POST
// waiting for it; a progress notification to the POST whose request carries
// its token; any other server request or notification to the oldest pending
// POST that can stream, else to the GET stream (queued until one is open).
func (s *session) dispatch(raw []byte, noise *lineLimiter) {
	msg := bytes.TrimSpace(raw)
	if bytes.ContainsAny(msg, "\r\n") { // a bare CR would split an SSE data line
		var buf bytes.Buffer
		if json.Compact(&buf, msg) == nil {
			msg = buf.Bytes()
		}
	}
	m, err := jsonrpc.Parse(msg, maxDepth)
	if err != nil {
		if noise.allow(time.Now(), s.log, "stdout") {
			s.log.Warn("stdio process wrote a non-JSON-RPC line to stdout; skipped", "line", truncateLine(msg), "err", err)
		}
		return
	}
	msg = bytes.Clone(msg)
	method := m.Method
	if m.IsResponse {
		key, ok := jsonrpc.IDKey(m.ID)
		s.mu.Lock()
		c := s.pending[key]
		if ok && c != nil {
			delete(s.pending, key)
		}
		s.mu.Unlock()
		if !ok || c == nil {
			s.log.Debug("response to no pending request dropped (timed out or abandoned)", "id", string(m.ID))
			return
		}
		c.box.finish(msg)
		return
	}
	var target *mailbox
	s.mu.Lock()
	if method == "notifications/progress" {
		if tok, ok := jsonrpc.IDKey(m.Params["progressToken"]); ok {
			for _, c := range s.pending {
				if c.token == tok && c.sse {
					target = c.box
					break
				}
			}
		}
	}
	if target == nil {
		var oldest *pendingCall
		for _, c := range s.pending {
			if c.sse && (oldest == nil || c.seq < oldest.seq) {
				oldest = c
			}
		}
		if oldest != nil {
			target = oldest.box
		} else {
			target = s.standalone
		}
	}
	s.mu.Unlock()
	if target.push(msg) {
		s.log.Warn("stdio server message dropped: the client does not read its stream", "method", method)
	}
}

// mailbox queues server messages for one HTTP stream. The reader of stdout
// never blocks on it: beyond max messages the oldest is dropped. A POST's
// mailbox also receives the final response, which is never dropped.
type mailbox struct {
	mu    sync.Mutex
	msgs  [][]byte
	final []byte
	max   int
	ready chan struct{}
}

func newMailbox(max int) *mailbox {
	return &mailbox{max: max, ready: make(chan struct{}, 1)}
}

// push queues msg and reports whether an older message was dropped for it.
func (m *mailbox) push(msg []byte) bool {
	m.mu.Lock()
	dropped := false
	if len(m.msgs) >= m.max {
		m.msgs = m.msgs[1:]
		dropped = true
	}
	m.msgs = append(m.msgs, msg)
	m.mu.Unlock()
	m.signal()
	return dropped
}

func (m *mailbox) finish(msg []byte) {
	m.mu.Lock()
	m.final = msg
	m.mu.Unlock()
	m.signal()
}

func (m *mailbox) signal() {
	select {
	case m.ready <- struct{}{}:
	default:
	}
}

func (m *mailbox) take() ([][]byte, []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	msgs, final := m.msgs, m.final
	m.msgs, m.final = nil, nil
	return msgs, final
}

// baseEnv is what a stdio process inherits of the gateway's own
// environment (plus every LC_* variable): enough to run, never the gateway's
// secrets. Everything else a backend needs comes from Config.Env.
var baseEnv = []string{"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM"}

// processEnv is the inherited allowlist of base followed by extra.
func processEnv(base, extra []string) []string {
	var env []string
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains(baseEnv, k) || strings.HasPrefix(k, "LC_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// session is one client session: one process.
type session struct {
	b     *Bridge
	id    string
	owner string // OwnerHeader of the initialize that started it
	log   *slog.Logger

	cmd     *exec.Cmd
	pid     int
	stdin   *os.File
	stdout  *os.File
	stderr  *os.File
	writeMu sync.Mutex // one message at a time on stdin

	mu         sync.Mutex
	started    bool
	ended      bool
	reason     string
	exitedFlag bool
	pending    map[string]*pendingCall // requests waiting for their response, by id key
	seq        int64
	standalone *mailbox // server messages for the GET stream
	getOpen    bool
	active     int // HTTP requests in progress
	lastUsed   time.Time

	endOnce sync.Once
	done    chan struct{} // closed when the session ends
	exited  chan struct{} // closed when the process is reaped
	outDone chan struct{} // stdout reader finished
	errDone chan struct{} // stderr reader finished
}

// pendingCall is a POSTed request waiting for its response.
type pendingCall struct {
	seq   int64
	sse   bool   // the client accepts an SSE answer, so server messages may go there
	token string // key of params._meta.progressToken, "" if none
	box   *mailbox
}

func (s *session) start() error {
	cfg := s.b.cfg
	inR, inW, err := os.Pipe()
	if err != nil {
		return err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return err
	}
	cmd := &exec.Cmd{
		Path:   s.b.path,
		Args:   slices.Clone(cfg.Command),
		Env:    s.b.env,
		Dir:    cfg.Dir,
		Stdin:  inR,
		Stdout: outW,
		Stderr: errW,
		// Its own process group, so that ending the session reaches
		// whatever the command spawned (npx → node, uvx → python …).
		SysProcAttr: newGroupAttr(),
	}
	s.mu.Lock()
	if s.ended {
		err = errEnded
	} else {
		err = cmd.Start()
	}
	if err == nil {
		s.cmd, s.pid, s.started = cmd, cmd.Process.Pid, true
		s.stdin, s.stdout, s.stderr = inW, outR, errR
	}
	s.mu.Unlock()
	// The child has its ends; ours are the others.
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return err
	}
	s.log = s.log.With("pid", s.pid)
	s.log.Info("stdio session started")
	go s.readStdout()
	go s.readStderr()
	go s.wait()
	return nil
}

// wait reaps the process, then ends the session once everything the
// process wrote to stdout has been dispatched.
func (s *session) wait() {
	err := s.cmd.Wait()
	s.mu.Lock()
	s.exitedFlag = true
	s.mu.Unlock()
	// The leader is gone; nothing of its group may outlive it (and hold
	// our pipes open).
	_ = signalGroup(s.pid, sigKill)
	timeout := time.After(killGrace)
	for _, ch := range []chan struct{}{s.outDone, s.errDone} {
		select {
		case <-ch:
		case <-timeout:
			s.stdout.Close()
			s.stderr.Close()
		}
	}
	s.mu.Lock()
	ours := s.ended
	s.mu.Unlock()
	if ours {
		s.log.Info("stdio process ended", "status", exitStatus(err))
	} else {
		s.log.Warn("stdio process exited; its session ends", "status", exitStatus(err))
	}
	s.end("the stdio process exited") // its status is in the log, not for the client
	b := s.b
	b.mu.Lock()
	delete(b.procs, s)
	b.mu.Unlock()
	close(s.exited)
	b.reaped.Done()
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// end ends the session once: it is forgotten (later requests get 404),
// waiters are released, stdin is closed and the process group gets SIGTERM,
// then SIGKILL after killGrace.
func (s *session) end(reason string) {
	s.endOnce.Do(func() {
		s.mu.Lock()
		s.ended, s.reason = true, reason
		s.pending = map[string]*pendingCall{}
		started, exited := s.started, s.exitedFlag
		s.mu.Unlock()
		b := s.b
		b.mu.Lock()
		if b.sessions[s.id] == s {
			delete(b.sessions, s.id)
		}
		b.mu.Unlock()
		close(s.done)
		if !started {
			return
		}
		s.log.Info("stdio session ending", "reason", reason)
		s.stdin.Close() // EOF: the polite way to ask a stdio server to stop
		if exited {
			return
		}
		s.signal(sigTerm)
		go func() {
			t := time.NewTimer(killGrace)
			defer t.Stop()
			select {
			case <-s.exited:
			case <-t.C:
				s.signal(sigKill)
			}
		}()
	})
}

// signal signals the process group while the leader is not yet reaped.
func (s *session) signal(sig groupSignal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started && !s.exitedFlag {
		_ = signalGroup(s.pid, sig)
	}
}

// inputFailed ends the session after a failed or partial write to stdin,
// which leaves the stream unusable: the cause goes to the log, the client
// hears only that the session ended.
func (s *session) inputFailed(err error) {
	s.log.Warn("stdio process stdin write failed; its session ends", "err", err)
	s.end("the stdio process does not accept input")
}

// endReason is why the session ended, as a client may be told: end is
// only ever given generic reasons; the details are logged where they
// happen.
func (s *session) endReason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reason
}

func (s *session) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active++
	s.lastUsed = time.Now()
	return !s.ended
}

func (s *session) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active--
	s.lastUsed = time.Now()
}

// evictable reports how long the session has been unused and whether it
// serves no request now (an open GET stream aside).
func (s *session) evictable(now time.Time) (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	busy := s.active
	if s.getOpen {
		busy--
	}
	if s.ended || busy > 0 || len(s.pending) > 0 {
		return 0, false
	}
	return now.Sub(s.lastUsed), true
}

func (s *session) idleFor(now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active > 0 || len(s.pending) > 0 || s.getOpen {
		return 0
	}
	return now.Sub(s.lastUsed)
}

// write puts one newline-terminated message on stdin. A failed or partial
// write leaves the stream unusable, so the caller ends the session.
func (s *session) write(line []byte, deadline time.Time) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	select {
	case <-s.done:
		return errEnded
	default:
	}
	if err := s.stdin.SetWriteDeadline(deadline); err != nil {
		return err
	}
	_, err := s.stdin.Write(line)
	return err
}

// readStdout reads the process's messages, one per line, and dispatches
// them. A line that is not a JSON-RPC message is logged and skipped.
func (s *session) readStdout() {
	defer close(s.outDone)
	defer s.stdout.Close()
	sc := bufio.NewScanner(s.stdout)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	noise := &lineLimiter{}
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if line[0] == '[' { // a batch (2025-03-26): dispatch its members
			var batch []json.RawMessage
			if err := json.Unmarshal(line, &batch); err == nil {
				for _, m := range batch {
					s.dispatch(m, noise)
				}
				continue
			}
		}
		s.dispatch(line, noise)
	}
	noise.flush(s.log, "stdout")
	if err := sc.Err(); err != nil && !errors.Is(err, os.ErrClosed) {
		s.log.Error("stdio process stdout unreadable", "err", err)
		s.end("the stdio process's output could not be read")
	}
}

// readStderr forwards the process's stderr to the log, line by line,
// rate-limited and truncated; it keeps draining whatever happens so that
// the process never blocks on a full pipe.
func (s *session) readStderr() {
	defer close(s.errDone)
	defer s.stderr.Close()
	br := bufio.NewReaderSize(s.stderr, logLineMax)
	lim := &lineLimiter{}
	for {
		chunk, err := br.ReadSlice('\n')
		text := strings.TrimRight(string(chunk), "\r\n")
		if errors.Is(err, bufio.ErrBufferFull) {
			text += " …(truncated)"
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
		}
		if text != "" && lim.allow(time.Now(), s.log, "stderr") {
			s.log.Info("stdio stderr", "line", text)
		}
		if err != nil {
			break
		}
	}
	lim.flush(s.log, "stderr")
}

// lineLimiter lets linesPerSecond lines a second into the log and
// counts the rest. It belongs to one goroutine.
type lineLimiter struct {
	window     time.Time
	n          int
	suppressed int
}

func (l *lineLimiter) allow(now time.Time, log *slog.Logger, stream string) bool {
	if now.Sub(l.window) >= time.Second {
		l.flush(log, stream)
		l.window, l.n = now, 0
	}
	if l.n < linesPerSecond {
		l.n++
		return true
	}
	if l.suppressed == 0 {
		log.Warn("stdio output rate limit reached; lines suppressed for the rest of the second", "stream", stream)
	}
	l.suppressed++
	return false
}

func (l *lineLimiter) flush(log *slog.Logger, stream string) {
	if l.suppressed > 0 {
		log.Warn("stdio output lines suppressed by the rate limit", "stream", stream, "lines", l.suppressed)
		l.suppressed = 0
	}
}

func truncateLine(b []byte) string {
	if len(b) > logLineMax {
		b = b[:logLineMax]
	}
	return strings.ToValidUTF8(string(b), "?")
}

// kind is what a POSTed message is.
type kind int

const (
	kindRequest kind = iota
	kindNotification
	kindResponse
)

// incoming is a POSTed message, ready for stdin.
type incoming struct {
	line   []byte // compact (one line), newline-terminated
	id     json.RawMessage
	key    string
	method string
	kind   kind
	token  string
}

// parsePost reads a POST body as one JSON-RPC message, with the strict
// parser the gateway uses (jsonrpc.Parse), and makes it a single line for
// stdin. On error, code is the JSON-RPC error code to answer with.
func parsePost(body []byte) (*incoming, int, error) {
	m, err := jsonrpc.Parse(body, maxDepth)
	if err != nil {
		return nil, jsonrpc.Code(err), err
	}
	in := &incoming{id: m.ID, method: m.Method}
	var ok bool
	switch {
	case m.IsResponse:
		if in.key, ok = jsonrpc.IDKey(m.ID); !ok {
			return nil, jsonrpc.CodeInvalidRequest, errors.New("a response needs a string or number id")
		}
		in.kind = kindResponse
	case m.ID == nil:
		in.kind = kindNotification
	default:
		if in.key, ok = jsonrpc.IDKey(m.ID); !ok {
			return nil, jsonrpc.CodeInvalidRequest, errors.New("id must be a string or a number")
		}
		in.kind = kindRequest
		in.token, _ = jsonrpc.IDKey(m.ProgressToken)
	}
	var buf bytes.Buffer
	buf.Grow(len(body) + 1)
	if err := json.Compact(&buf, body); err != nil { // what Parse accepted compacts
		return nil, jsonrpc.CodeParseError, fmt.Errorf("%w: %w", jsonrpc.ErrMalformed, err)
	}
	buf.WriteByte('\n')
	in.line = buf.Bytes()
	return in, 0, nil
}

// accepts reports which answers an Accept header allows. No Accept
// header allows both.
func accepts(values []string) (jsonOK, sseOK bool) {
	if len(values) == 0 {
		return true, true
	}
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			switch strings.ToLower(strings.TrimSpace(mt)) {
			case "*/*":
				jsonOK, sseOK = true, true
			case "application/json", "application/*":
				jsonOK = true
			case "text/event-stream", "text/*":
				sseOK = true
			}
		}
	}
	return jsonOK, sseOK
}

func reply(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func fail(w http.ResponseWriter, status int, id json.RawMessage, code int, msg string) {
	reply(w, status, jsonrpc.ErrorBody(id, code, msg, nil))
}

func (b *Bridge) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/mcp" {
		http.NotFound(w, r)
		return
	}
	switch r.Method {
	case http.MethodPost:
		b.handlePost(w, r)
	case http.MethodGet:
		b.handleGet(w, r)
	case http.MethodDelete:
		b.handleDelete(w, r)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		fail(w, http.StatusMethodNotAllowed, nil, jsonrpc.CodeInvalidRequest, "method not allowed")
	}
}

// lookup finds the live session a request names; it has answered otherwise.
func (b *Bridge) lookup(w http.ResponseWriter, r *http.Request, id json.RawMessage) *session {
	sid := r.Header.Get(sessionHeader)
	if sid == "" {
		fail(w, http.StatusBadRequest, id, jsonrpc.CodeInvalidRequest, "missing "+sessionHeader)
		return nil
	}
	s := b.session(sid)
	if s == nil {
		fail(w, http.StatusNotFound, id, jsonrpc.CodeInvalidRequest, "unknown or expired session")
		return nil
	}
	return s
}

func (b *Bridge) handlePost(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			fail(w, http.StatusRequestEntityTooLarge, nil, jsonrpc.CodeInvalidRequest,
				fmt.Sprintf("request body exceeds %d bytes", maxBody))
			return
		}
		fail(w, http.StatusBadRequest, nil, jsonrpc.CodeInvalidRequest, "could not read the body")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			fail(w, http.StatusUnsupportedMediaType, nil, jsonrpc.CodeInvalidRequest, "Content-Type must be application/json")
			return
		}
	}
	jsonOK, sseOK := accepts(r.Header.Values("Accept"))
	if !jsonOK && !sseOK {
		fail(w, http.StatusNotAcceptable, nil, jsonrpc.CodeInvalidRequest, "Accept must allow application/json and text/event-stream")
		return
	}
	in, code, err := parsePost(body)
	if err != nil {
		fail(w, http.StatusBadRequest, nil, code, "invalid request: "+err.Error())
		return
	}

	var s *session
	fresh := r.Header.Get(sessionHeader) == ""
	if fresh {
		if in.kind != kindRequest || in.method != "initialize" {
			fail(w, http.StatusBadRequest, in.id, jsonrpc.CodeInvalidRequest,
				"missing "+sessionHeader+": only initialize starts a session")
			return
		}
		var status int
		if s, status, err = b.newSession(r.Header.Get(OwnerHeader)); err != nil {
			msg := "stdio backend " + b.cfg.Name + ": " + err.Error()
			switch status {
			case http.StatusTooManyRequests:
				w.Header().Set("Retry-After", retryAfter)
				msg += fmt.Sprintf(" (%d): end one (DELETE) or retry later", b.cfg.MaxSessionsPerAgent)
			case http.StatusServiceUnavailable:
				w.Header().Set("Retry-After", retryAfter)
			}
			fail(w, status, in.id, jsonrpc.CodeInternalError, msg)
			return
		}
	} else if s = b.lookup(w, r, in.id); s == nil {
		return
	}
	if !s.begin() {
		s.finish()
		fail(w, http.StatusNotFound, in.id, jsonrpc.CodeInvalidRequest, "unknown or expired session")
		return
	}
	defer s.finish()
	deadline := time.Now().Add(b.cfg.RequestTimeout)

	if in.kind != kindRequest {
		if err := s.write(in.line, deadline); err != nil {
			s.inputFailed(err)
			fail(w, http.StatusNotFound, in.id, jsonrpc.CodeInvalidRequest, "the stdio session has ended")
			return
		}
		w.WriteHeader(http.StatusAccepted)
		return
	}

	call := &pendingCall{sse: sseOK, token: in.token, box: newMailbox(streamQueue)}
	if err := s.register(in.key, call); err != nil {
		if errors.Is(err, errDuplicate) {
			fail(w, http.StatusBadRequest, in.id, jsonrpc.CodeInvalidRequest, err.Error())
		} else {
			fail(w, http.StatusNotFound, in.id, jsonrpc.CodeInvalidRequest, "unknown or expired session")
		}
		return
	}
	established := false
	if fresh {
		// A session whose initialize did not succeed is not kept.
		defer func() {
			if !established {
				s.end("initialize did not succeed")
			}
		}()
	}
	if err := s.write(in.line, deadline); err != nil {
		s.unregister(in.key, call)
		s.inputFailed(err)
		status := http.StatusNotFound
		if fresh {
			status = http.StatusBadGateway
		}
		fail(w, status, in.id, jsonrpc.CodeInternalError, "the stdio process does not accept input")
		return
	}

	rc := http.NewResponseController(w)
	streaming := false
	startStream := func() {
		streaming = true
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache, no-transform")
		h.Set("X-Accel-Buffering", "no")
		if fresh {
			h.Set(sessionHeader, s.id)
		}
		w.WriteHeader(http.StatusOK)
	}
	// answer sends the final message: the response, or an error in its place.
	answer := func(msg []byte, status int) {
		if streaming {
			_ = writeSSE(w, rc, msg)
			return
		}
		if fresh && established {
			w.Header().Set(sessionHeader, s.id)
		}
		w.Header().Set("Cache-Control", "no-cache, no-transform")
		reply(w, status, msg)
	}
	// relay writes server messages; it reports false when the client is gone.
	relay := func(msgs [][]byte) bool {
		for _, m := range msgs {
			if !streaming {
				startStream()
			}
			if err := writeSSE(w, rc, m); err != nil {
				return false
			}
		}
		return true
	}
	response := func(final []byte) {
		if fresh {
			var e struct {
				Error json.RawMessage `json:"error"`
			}
			established = json.Unmarshal(final, &e) == nil && e.Error == nil
		}
		answer(final, http.StatusOK)
	}

	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		select {
		case <-call.box.ready:
			msgs, final := call.box.take()
			if !relay(msgs) {
				s.unregister(in.key, call)
				return
			}
			if final != nil {
				response(final)
				return
			}
		case <-s.done:
			// What the process wrote before it ended has been dispatched.
			msgs, final := call.box.take()
			if relay(msgs) && final != nil {
				response(final)
				return
			}
			status := http.StatusNotFound
			if fresh {
				status = http.StatusBadGateway
			}
			answer(jsonrpc.ErrorBody(in.id, jsonrpc.CodeInternalError, "stdio backend "+b.cfg.Name+": "+s.endReason(), nil), status)
			return
		case <-timer.C:
			s.unregister(in.key, call)
			msgs, final := call.box.take()
			if relay(msgs) && final != nil { // it made it after all
				response(final)
				return
			}
			go s.cancelRequest(in.id)
			answer(jsonrpc.ErrorBody(in.id, jsonrpc.CodeInternalError, fmt.Sprintf("stdio backend %s did not answer within %s", b.cfg.Name, b.cfg.RequestTimeout), nil), http.StatusOK)
			return
		case <-r.Context().Done():
			// The client is gone. Disconnection is not cancellation: the
			// process finishes the request and its late response is dropped.
			s.unregister(in.key, call)
			return
		}
	}
}

// cancelRequest tells the process the bridge gave up on a request.
func (s *session) cancelRequest(id json.RawMessage) {
	line, err := json.Marshal(map[string]any{
		"jsonrpc": "2.0",
		"method":  "notifications/cancelled",
		"params":  map[string]any{"requestId": id, "reason": "request timed out at the gateway"},
	})
	if err != nil {
		return
	}
	if err := s.write(append(line, '\n'), time.Now().Add(writeTimeout)); err != nil && !errors.Is(err, errEnded) {
		s.inputFailed(err)
	}
}

func writeSSE(w io.Writer, rc *http.ResponseController, msg []byte) error {
	_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	buf := make([]byte, 0, len(msg)+24)
	buf = append(buf, "event: message\ndata: "...)
	buf = append(buf, msg...)
	buf = append(buf, "\n\n"...)
	if _, err := w.Write(buf); err != nil {
		return err
	}
	return rc.Flush()
}

// handleGet serves the session's stream of server messages not tied to a
// pending request.
func (b *Bridge) handleGet(w http.ResponseWriter, r *http.Request) {
	if _, sseOK := accepts(r.Header.Values("Accept")); !sseOK {
		fail(w, http.StatusNotAcceptable, nil, jsonrpc.CodeInvalidRequest, "Accept must allow text/event-stream")
		return
	}
	s := b.lookup(w, r, nil)
	if s == nil {
		return
	}
	s.mu.Lock()
	switch {
	case s.ended:
		s.mu.Unlock()
		fail(w, http.StatusNotFound, nil, jsonrpc.CodeInvalidRequest, "unknown or expired session")
		return
	case s.getOpen:
		s.mu.Unlock()
		fail(w, http.StatusConflict, nil, jsonrpc.CodeInvalidRequest, "this session already has a GET stream")
		return
	}
	s.getOpen = true
	s.mu.Unlock()
	s.begin()
	defer func() {
		s.mu.Lock()
		s.getOpen = false
		s.mu.Unlock()
		s.finish()
	}()

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if rc.Flush() != nil {
		return
	}
	ping := time.NewTicker(keepAlive)
	defer ping.Stop()
	for {
		select {
		case <-s.standalone.ready:
			msgs, _ := s.standalone.take()
			for _, m := range msgs {
				if writeSSE(w, rc, m) != nil {
					return
				}
			}
		case <-ping.C:
			_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		case <-s.done:
			return
		case <-r.Context().Done():
			return
		}
	}
}

// handleDelete ends a session and waits (briefly) for its process to go.
func (b *Bridge) handleDelete(w http.ResponseWriter, r *http.Request) {
	s := b.lookup(w, r, nil)
	if s == nil {
		return
	}
	s.end("deleted by the client")
	select {
	case <-s.exited:
	case <-time.After(killGrace + time.Second):
	case <-r.Context().Done():
	}
	w.WriteHeader(http.StatusNoContent)
}

// processGroups: every session's process runs in a group of its own, so
// that ending the session reaches whatever the command spawned.
const processGroups = true

// groupSignal is a signal the bridge sends a session's process group.
type groupSignal = syscall.Signal

const (
	sigTerm = syscall.SIGTERM
	sigKill = syscall.SIGKILL
)

// newGroupAttr starts a process as the leader of a new process group.
func newGroupAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// signalGroup signals the process group whose leader is pid.
func signalGroup(pid int, sig groupSignal) error { return syscall.Kill(-pid, sig) }
