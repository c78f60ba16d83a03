package host

import (
	"bufio"
	"bytes"
	"context"
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
	"unicode/utf8"

	"github.com/pbac-gateway/pbac/jsonrpc"
)

// Limits and defaults of the stdio bridge.
const (
	stdioDefaultTimeout  = 60 * time.Second
	stdioDefaultSessions = 16
	// DefaultStdioSessionsPerAgent is how many of one stdio backend's
	// processes one agent may hold when StdioConfig does not say.
	DefaultStdioSessionsPerAgent = 4
	stdioDefaultIdle             = 30 * time.Minute
	// stdioRetryAfter is the Retry-After (seconds) of a refused initialize.
	stdioRetryAfter = "5"
	// stdioMaxBody bounds one POSTed JSON-RPC message.
	stdioMaxBody = 4 << 20
	// stdioMaxLine bounds one line (one message) the process writes to stdout.
	stdioMaxLine = 16 << 20
	// stdioStreamQueue bounds the server messages queued for one POST's
	// stream; stdioBacklog those queued for the GET stream (kept while no GET
	// stream is open, oldest dropped first).
	stdioStreamQueue = 1024
	stdioBacklog     = 256
	// stdioKillGrace is how long a process has, after its stdin is closed
	// and its group got SIGTERM, before the group gets SIGKILL.
	stdioKillGrace = 2 * time.Second
	// stdioLinesPerSecond rate-limits what a process's stderr (and stray
	// non-JSON stdout) puts in the log; stdioLogLineMax truncates a line.
	stdioLinesPerSecond = 50
	stdioLogLineMax     = 4 << 10
	stdioKeepAlive      = 25 * time.Second
	stdioWriteTimeout   = 30 * time.Second
)

// stdioBaseEnv is what a stdio process inherits of the gateway's own
// environment (plus every LC_* variable): enough to run, never the gateway's
// secrets. Everything else a backend needs comes from StdioConfig.Env.
var stdioBaseEnv = []string{"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM"}

var (
	errStdioEnded     = errors.New("the stdio session has ended")
	errStdioDuplicate = errors.New("a request with this id is already in flight in this session")
	errStdioFull      = errors.New("every stdio session is in use")
	errStdioAgentFull = errors.New("this agent holds as many stdio sessions as one agent may, all of them busy")
	errStdioClosed    = errors.New("the stdio backend is closing")
)

// StdioOwnerHeader is the header on which the gateway names, to a stdio
// bridge, the opaque key of the agent a request is for (Backend.OwnerHeader).
// The bridge shares its processes by it: requests without it count as one
// agent.
const StdioOwnerHeader = "Pbac-Owner"

// StdioConfig describes one stdio MCP server command.
type StdioConfig struct {
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
	// MaxSessionsPerAgent (default DefaultStdioSessionsPerAgent) bounds the
	// processes one agent (StdioOwnerHeader) holds. An initialize beyond it
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

// StdioBackend serves one stdio MCP server command as a Streamable HTTP
// endpoint on 127.0.0.1, so that the gateway forwards to it like to any
// other backend.
//
// Each session is one process: a POST of initialize without Mcp-Session-Id
// starts it, DELETE ends it. A process that exits ends its session; requests
// naming the session are then answered 404 and the client re-initializes,
// which starts a fresh process.
type StdioBackend struct {
	cfg  StdioConfig
	path string   // resolved Command[0]
	env  []string // the processes' environment
	log  *slog.Logger
	url  string
	srv  *http.Server

	mu       sync.Mutex
	sessions map[string]*stdioSession   // by session id, live ones only
	procs    map[*stdioSession]struct{} // every session whose process is not yet reaped
	closed   bool
	reaped   sync.WaitGroup // one per session in procs
	stop     chan struct{}  // ends the idle reaper
	stopOnce sync.Once
}

// StartStdio listens on 127.0.0.1:0 and serves cfg's command there. ctx
// bounds only the start; the backend runs until Close.
func StartStdio(ctx context.Context, cfg StdioConfig) (*StdioBackend, error) {
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
		cfg.RequestTimeout = stdioDefaultTimeout
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = stdioDefaultSessions
	}
	if cfg.MaxSessionsPerAgent <= 0 {
		cfg.MaxSessionsPerAgent = DefaultStdioSessionsPerAgent
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = stdioDefaultIdle
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("stdio backend %s: %w", cfg.Name, err)
	}
	b := &StdioBackend{
		cfg:      cfg,
		path:     path,
		env:      stdioEnv(os.Environ(), cfg.Env),
		log:      cfg.Logger.With("backend", cfg.Name),
		url:      "http://" + ln.Addr().String() + "/mcp",
		sessions: map[string]*stdioSession{},
		procs:    map[*stdioSession]struct{}{},
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
	go func() {
		if err := b.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.log.Error("stdio backend listener failed", "err", err)
		}
	}()
	go b.reapIdle()
	b.log.Info("stdio backend listening", "url", b.url, "command", path)
	return b, nil
}

// URL is the Streamable HTTP endpoint: http://127.0.0.1:PORT/mcp.
func (b *StdioBackend) URL() string { return b.url }

// Backend is the gateway's backend for this bridge: its URL, and the owner
// header its fair sharing reads.
func (b *StdioBackend) Backend() Backend {
	return Backend{Name: b.cfg.Name, URL: b.url, OwnerHeader: StdioOwnerHeader}
}

// Close ends every session, kills every process (SIGTERM to its process
// group, SIGKILL after a grace period or when ctx ends first), closes the
// listener and waits for the processes to be reaped.
func (b *StdioBackend) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	live := make([]*stdioSession, 0, len(b.sessions))
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
	done := make(chan struct{})
	go func() { b.reaped.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		b.mu.Lock()
		for s := range b.procs {
			s.signal(syscall.SIGKILL)
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

// stdioEnv is the inherited allowlist of base followed by extra.
func stdioEnv(base, extra []string) []string {
	var env []string
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains(stdioBaseEnv, k) || strings.HasPrefix(k, "LC_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// reapIdle ends sessions idle for longer than IdleTimeout.
func (b *StdioBackend) reapIdle() {
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
			var stale []*stdioSession
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
// StdioConfig.MaxSessionsPerAgent).
func (b *StdioBackend) newSession(owner string) (*stdioSession, int, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, http.StatusServiceUnavailable, errStdioClosed
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
	s := &stdioSession{
		b:          b,
		owner:      owner,
		id:         newID(),
		pending:    map[string]*stdioCall{},
		standalone: newMailbox(stdioBacklog),
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
		return nil, http.StatusBadGateway, err
	}
	return s, 0, nil
}

// makeRoom decides whether owner may start a session now: nil and no
// victim when there is room; a victim to end when the owner is at its quota
// (its own least recently used idle session) or the bridge is full (the
// least recently used idle session of the agent holding the most, when it
// holds at least two more than owner); else the status and error to refuse
// with. b.mu is held.
func (b *StdioBackend) makeRoom(owner string, now time.Time) (*stdioSession, int, error) {
	held := map[string][]*stdioSession{}
	for _, s := range b.sessions {
		held[s.owner] = append(held[s.owner], s)
	}
	mine := len(held[owner])
	if mine >= b.cfg.MaxSessionsPerAgent {
		if v := leastRecentlyUsedIdle(held[owner], now); v != nil {
			return v, 0, nil
		}
		return nil, http.StatusTooManyRequests, errStdioAgentFull
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
	return nil, http.StatusServiceUnavailable, errStdioFull
}

// leastRecentlyUsedIdle is the session of ss last used longest ago among
// those serving no request (an open GET stream does not count: ending the
// session ends it), or nil.
func leastRecentlyUsedIdle(ss []*stdioSession, now time.Time) *stdioSession {
	var lru *stdioSession
	var lruIdle time.Duration
	for _, s := range ss {
		idle, ok := s.evictable(now)
		if ok && (lru == nil || idle > lruIdle) {
			lru, lruIdle = s, idle
		}
	}
	return lru
}

func (b *StdioBackend) session(id string) *stdioSession {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sessions[id]
}

// stdioSession is one client session: one process.
type stdioSession struct {
	b     *StdioBackend
	id    string
	owner string // StdioOwnerHeader of the initialize that started it
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
	pending    map[string]*stdioCall // requests waiting for their response, by id key
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

// stdioCall is a POSTed request waiting for its response.
type stdioCall struct {
	seq   int64
	sse   bool   // the client accepts an SSE answer, so server messages may go there
	token string // key of params._meta.progressToken, "" if none
	box   *mailbox
}

func (s *stdioSession) start() error {
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
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	s.mu.Lock()
	if s.ended {
		err = errStdioEnded
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
func (s *stdioSession) wait() {
	err := s.cmd.Wait()
	s.mu.Lock()
	s.exitedFlag = true
	s.mu.Unlock()
	// The leader is gone; nothing of its group may outlive it (and hold
	// our pipes open).
	_ = syscall.Kill(-s.pid, syscall.SIGKILL)
	timeout := time.After(stdioKillGrace)
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
	s.end("the stdio process exited (" + exitStatus(err) + ")")
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
// then SIGKILL after stdioKillGrace.
func (s *stdioSession) end(reason string) {
	s.endOnce.Do(func() {
		s.mu.Lock()
		s.ended, s.reason = true, reason
		s.pending = map[string]*stdioCall{}
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
		s.signal(syscall.SIGTERM)
		go func() {
			t := time.NewTimer(stdioKillGrace)
			defer t.Stop()
			select {
			case <-s.exited:
			case <-t.C:
				s.signal(syscall.SIGKILL)
			}
		}()
	})
}

// signal signals the process group while the leader is not yet reaped.
func (s *stdioSession) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started && !s.exitedFlag {
		_ = syscall.Kill(-s.pid, sig)
	}
}

func (s *stdioSession) endReason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reason
}

func (s *stdioSession) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active++
	s.lastUsed = time.Now()
	return !s.ended
}

func (s *stdioSession) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active--
	s.lastUsed = time.Now()
}

// evictable reports how long the session has been unused and whether it
// serves no request now (an open GET stream aside).
func (s *stdioSession) evictable(now time.Time) (time.Duration, bool) {
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

func (s *stdioSession) idleFor(now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active > 0 || len(s.pending) > 0 || s.getOpen {
		return 0
	}
	return now.Sub(s.lastUsed)
}

// write puts one newline-terminated message on stdin. A failed or partial
// write leaves the stream unusable, so the caller ends the session.
func (s *stdioSession) write(line []byte, deadline time.Time) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	select {
	case <-s.done:
		return errStdioEnded
	default:
	}
	if err := s.stdin.SetWriteDeadline(deadline); err != nil {
		return err
	}
	_, err := s.stdin.Write(line)
	return err
}

func (s *stdioSession) register(key string, c *stdioCall) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return errStdioEnded
	}
	if _, dup := s.pending[key]; dup {
		return errStdioDuplicate
	}
	s.seq++
	c.seq = s.seq
	s.pending[key] = c
	return nil
}

func (s *stdioSession) unregister(key string, c *stdioCall) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending[key] == c {
		delete(s.pending, key)
	}
}

// readStdout reads the process's messages, one per line, and dispatches
// them. A line that is not a JSON-RPC message is logged and skipped.
func (s *stdioSession) readStdout() {
	defer close(s.outDone)
	defer s.stdout.Close()
	sc := bufio.NewScanner(s.stdout)
	sc.Buffer(make([]byte, 64<<10), stdioMaxLine)
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
		s.end("stdout unreadable: " + err.Error())
	}
}

// stdioEnvelope is what the bridge reads of a message.
type stdioEnvelope struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  json.RawMessage `json:"method"`
	Params  json.RawMessage `json:"params"`
	Result  json.RawMessage `json:"result"`
	Error   json.RawMessage `json:"error"`
}

// dispatch routes one message from the process: a response to the POST
// waiting for it; a progress notification to the POST whose request carries
// its token; any other server request or notification to the oldest pending
// POST that can stream, else to the GET stream (queued until one is open).
func (s *stdioSession) dispatch(raw []byte, noise *lineLimiter) {
	msg := bytes.TrimSpace(raw)
	if bytes.ContainsAny(msg, "\r\n") { // a bare CR would split an SSE data line
		var buf bytes.Buffer
		if json.Compact(&buf, msg) == nil {
			msg = buf.Bytes()
		}
	}
	var env stdioEnvelope
	var method string
	if err := json.Unmarshal(msg, &env); err != nil || env.JSONRPC != "2.0" ||
		(env.Method != nil && (json.Unmarshal(env.Method, &method) != nil || method == "")) {
		if noise.allow(time.Now(), s.log, "stdout") {
			s.log.Warn("stdio process wrote a non-JSON-RPC line to stdout; skipped", "line", truncateLine(msg))
		}
		return
	}
	msg = bytes.Clone(msg)
	if method == "" {
		if env.Result == nil && env.Error == nil {
			s.log.Warn("stdio process wrote a message with neither method nor result; skipped")
			return
		}
		key, ok := jsonrpc.IDKey(env.ID)
		s.mu.Lock()
		c := s.pending[key]
		if ok && c != nil {
			delete(s.pending, key)
		}
		s.mu.Unlock()
		if !ok || c == nil {
			s.log.Debug("response to no pending request dropped (timed out or abandoned)", "id", string(env.ID))
			return
		}
		c.box.finish(msg)
		return
	}
	var target *mailbox
	s.mu.Lock()
	if method == "notifications/progress" {
		var p struct {
			ProgressToken json.RawMessage `json:"progressToken"`
		}
		if json.Unmarshal(env.Params, &p) == nil {
			if tok, ok := jsonrpc.IDKey(p.ProgressToken); ok {
				for _, c := range s.pending {
					if c.token == tok && c.sse {
						target = c.box
						break
					}
				}
			}
		}
	}
	if target == nil {
		var oldest *stdioCall
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

// readStderr forwards the process's stderr to the log, line by line,
// rate-limited and truncated; it keeps draining whatever happens so that
// the process never blocks on a full pipe.
func (s *stdioSession) readStderr() {
	defer close(s.errDone)
	defer s.stderr.Close()
	br := bufio.NewReaderSize(s.stderr, stdioLogLineMax)
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

// lineLimiter lets stdioLinesPerSecond lines a second into the log and
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
	if l.n < stdioLinesPerSecond {
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
	if len(b) > stdioLogLineMax {
		b = b[:stdioLogLineMax]
	}
	return strings.ToValidUTF8(string(b), "?")
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

// stdioKind is what a POSTed message is.
type stdioKind int

const (
	stdioRequest stdioKind = iota
	stdioNotification
	stdioResponse
)

// stdioIncoming is a POSTed message, ready for stdin.
type stdioIncoming struct {
	line   []byte // compact (one line), newline-terminated
	id     json.RawMessage
	key    string
	method string
	kind   stdioKind
	token  string
}

// parseStdioPost checks a POST body is one JSON-RPC message and makes it a
// single line. On error, code is the JSON-RPC error code to answer with.
func parseStdioPost(body []byte) (*stdioIncoming, int, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, jsonrpc.CodeInvalidRequest, errors.New("empty body")
	}
	if body[0] == '[' {
		return nil, jsonrpc.CodeInvalidRequest, errors.New("JSON-RPC batches are not supported")
	}
	if !utf8.Valid(body) {
		return nil, jsonrpc.CodeParseError, jsonrpc.ErrBadUTF8
	}
	var buf bytes.Buffer
	buf.Grow(len(body) + 1)
	if err := json.Compact(&buf, body); err != nil {
		return nil, jsonrpc.CodeParseError, fmt.Errorf("malformed JSON: %w", err)
	}
	var env stdioEnvelope
	if err := json.Unmarshal(buf.Bytes(), &env); err != nil {
		return nil, jsonrpc.CodeInvalidRequest, jsonrpc.ErrNotObject
	}
	in := &stdioIncoming{id: env.ID}
	if env.JSONRPC != "2.0" {
		return nil, jsonrpc.CodeInvalidRequest, errors.New(`jsonrpc must be "2.0"`)
	}
	var ok bool
	switch {
	case env.Method != nil:
		if json.Unmarshal(env.Method, &in.method) != nil || in.method == "" {
			return nil, jsonrpc.CodeInvalidRequest, errors.New("method must be a non-empty string")
		}
		if env.ID == nil {
			in.kind = stdioNotification
			break
		}
		if in.key, ok = jsonrpc.IDKey(env.ID); !ok {
			return nil, jsonrpc.CodeInvalidRequest, errors.New("id must be a string or a number")
		}
		in.kind = stdioRequest
		var p struct {
			Meta struct {
				ProgressToken json.RawMessage `json:"progressToken"`
			} `json:"_meta"`
		}
		if json.Unmarshal(env.Params, &p) == nil {
			in.token, _ = jsonrpc.IDKey(p.Meta.ProgressToken)
		}
	case env.Result != nil || env.Error != nil:
		if in.key, ok = jsonrpc.IDKey(env.ID); !ok {
			return nil, jsonrpc.CodeInvalidRequest, errors.New("a response needs a string or number id")
		}
		in.kind = stdioResponse
	default:
		return nil, jsonrpc.CodeInvalidRequest, errors.New("no method")
	}
	buf.WriteByte('\n')
	in.line = buf.Bytes()
	return in, 0, nil
}

// stdioAccepts reports which answers an Accept header allows. No Accept
// header allows both.
func stdioAccepts(values []string) (jsonOK, sseOK bool) {
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

func stdioReply(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func stdioFail(w http.ResponseWriter, status int, id json.RawMessage, code int, msg string) {
	stdioReply(w, status, jsonrpc.ErrorBody(id, code, msg, nil))
}

func (b *StdioBackend) serveHTTP(w http.ResponseWriter, r *http.Request) {
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
		stdioFail(w, http.StatusMethodNotAllowed, nil, jsonrpc.CodeInvalidRequest, "method not allowed")
	}
}

// lookup finds the live session a request names; it has answered otherwise.
func (b *StdioBackend) lookup(w http.ResponseWriter, r *http.Request, id json.RawMessage) *stdioSession {
	sid := r.Header.Get(hdrSession)
	if sid == "" {
		stdioFail(w, http.StatusBadRequest, id, jsonrpc.CodeInvalidRequest, "missing "+hdrSession)
		return nil
	}
	s := b.session(sid)
	if s == nil {
		stdioFail(w, http.StatusNotFound, id, jsonrpc.CodeInvalidRequest, "unknown or expired session")
		return nil
	}
	return s
}

func (b *StdioBackend) handlePost(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, stdioMaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			stdioFail(w, http.StatusRequestEntityTooLarge, nil, jsonrpc.CodeInvalidRequest,
				fmt.Sprintf("request body exceeds %d bytes", stdioMaxBody))
			return
		}
		stdioFail(w, http.StatusBadRequest, nil, jsonrpc.CodeInvalidRequest, "could not read the body")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			stdioFail(w, http.StatusUnsupportedMediaType, nil, jsonrpc.CodeInvalidRequest, "Content-Type must be application/json")
			return
		}
	}
	jsonOK, sseOK := stdioAccepts(r.Header.Values("Accept"))
	if !jsonOK && !sseOK {
		stdioFail(w, http.StatusNotAcceptable, nil, jsonrpc.CodeInvalidRequest, "Accept must allow application/json and text/event-stream")
		return
	}
	in, code, err := parseStdioPost(body)
	if err != nil {
		stdioFail(w, http.StatusBadRequest, nil, code, "invalid request: "+err.Error())
		return
	}

	var s *stdioSession
	fresh := r.Header.Get(hdrSession) == ""
	if fresh {
		if in.kind != stdioRequest || in.method != "initialize" {
			stdioFail(w, http.StatusBadRequest, in.id, jsonrpc.CodeInvalidRequest,
				"missing "+hdrSession+": only initialize starts a session")
			return
		}
		var status int
		if s, status, err = b.newSession(r.Header.Get(StdioOwnerHeader)); err != nil {
			msg := "stdio backend " + b.cfg.Name + ": " + err.Error()
			switch status {
			case http.StatusTooManyRequests:
				w.Header().Set("Retry-After", stdioRetryAfter)
				msg += fmt.Sprintf(" (%d): end one (DELETE) or retry later", b.cfg.MaxSessionsPerAgent)
			case http.StatusServiceUnavailable:
				w.Header().Set("Retry-After", stdioRetryAfter)
			}
			stdioFail(w, status, in.id, jsonrpc.CodeInternalError, msg)
			return
		}
	} else if s = b.lookup(w, r, in.id); s == nil {
		return
	}
	if !s.begin() {
		s.finish()
		stdioFail(w, http.StatusNotFound, in.id, jsonrpc.CodeInvalidRequest, "unknown or expired session")
		return
	}
	defer s.finish()
	deadline := time.Now().Add(b.cfg.RequestTimeout)

	if in.kind != stdioRequest {
		if err := s.write(in.line, deadline); err != nil {
			s.end("stdin write failed: " + err.Error())
			stdioFail(w, http.StatusNotFound, in.id, jsonrpc.CodeInvalidRequest, "the stdio session has ended")
			return
		}
		w.WriteHeader(http.StatusAccepted)
		return
	}

	call := &stdioCall{sse: sseOK, token: in.token, box: newMailbox(stdioStreamQueue)}
	if err := s.register(in.key, call); err != nil {
		if errors.Is(err, errStdioDuplicate) {
			stdioFail(w, http.StatusBadRequest, in.id, jsonrpc.CodeInvalidRequest, err.Error())
		} else {
			stdioFail(w, http.StatusNotFound, in.id, jsonrpc.CodeInvalidRequest, "unknown or expired session")
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
		s.end("stdin write failed: " + err.Error())
		status := http.StatusNotFound
		if fresh {
			status = http.StatusBadGateway
		}
		stdioFail(w, status, in.id, jsonrpc.CodeInternalError, "the stdio process does not accept input")
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
			h.Set(hdrSession, s.id)
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
			w.Header().Set(hdrSession, s.id)
		}
		w.Header().Set("Cache-Control", "no-cache, no-transform")
		stdioReply(w, status, msg)
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
func (s *stdioSession) cancelRequest(id json.RawMessage) {
	line, err := json.Marshal(map[string]any{
		"jsonrpc": "2.0",
		"method":  "notifications/cancelled",
		"params":  map[string]any{"requestId": id, "reason": "request timed out at the gateway"},
	})
	if err != nil {
		return
	}
	if err := s.write(append(line, '\n'), time.Now().Add(stdioWriteTimeout)); err != nil && !errors.Is(err, errStdioEnded) {
		s.end("stdin write failed: " + err.Error())
	}
}

func writeSSE(w io.Writer, rc *http.ResponseController, msg []byte) error {
	_ = rc.SetWriteDeadline(time.Now().Add(stdioWriteTimeout))
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
func (b *StdioBackend) handleGet(w http.ResponseWriter, r *http.Request) {
	if _, sseOK := stdioAccepts(r.Header.Values("Accept")); !sseOK {
		stdioFail(w, http.StatusNotAcceptable, nil, jsonrpc.CodeInvalidRequest, "Accept must allow text/event-stream")
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
		stdioFail(w, http.StatusNotFound, nil, jsonrpc.CodeInvalidRequest, "unknown or expired session")
		return
	case s.getOpen:
		s.mu.Unlock()
		stdioFail(w, http.StatusConflict, nil, jsonrpc.CodeInvalidRequest, "this session already has a GET stream")
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
	ping := time.NewTicker(stdioKeepAlive)
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
			_ = rc.SetWriteDeadline(time.Now().Add(stdioWriteTimeout))
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
func (b *StdioBackend) handleDelete(w http.ResponseWriter, r *http.Request) {
	s := b.lookup(w, r, nil)
	if s == nil {
		return
	}
	s.end("deleted by the client")
	select {
	case <-s.exited:
	case <-time.After(stdioKillGrace + time.Second):
	case <-r.Context().Done():
	}
	w.WriteHeader(http.StatusNoContent)
}
