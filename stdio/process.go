package stdio

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
)

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
	// shared marks the shared process (Config.Shared, shared.go); replies
	// queues the lines the bridge itself sends it (answers to its
	// requests, cancellations), written by writeQueued, not by the stdout
	// reader; repliesDone closes when writeQueued returns.
	shared      bool
	replies     chan []byte
	repliesDone chan struct{}

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
	// origID and origToken are the client's id and progress token when
	// the process knows the request by the bridge's own (shared mode):
	// its response and progress go back under them.
	origID, origToken json.RawMessage
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
	if s.repliesDone != nil {
		<-s.repliesDone // writeQueued returns at s.done
	}
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
		if s.shared {
			b.endViewsOf(s)
		}
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
//
// A write that wrote nothing before its deadline (errStdinBusy) leaves the
// stream intact: the session goes on, and inputFailed reports false.
func (s *session) inputFailed(err error) (ended bool) {
	if errors.Is(err, errStdinBusy) {
		s.log.Warn("stdio process did not read its input in time; the request is refused, the session goes on")
		return false
	}
	s.log.Warn("stdio process stdin write failed; its session ends", "err", err)
	s.end("the stdio process does not accept input")
	return true
}

// endReason is why the session ended, as a client may be told: end is
// only ever given generic reasons; the details are logged where they
// happen.
func (s *session) isEnded() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended
}

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
	n, err := s.stdin.Write(line)
	if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
		// Nothing was written: the stream is intact, the process is
		// only not reading now.
		return errStdinBusy
	}
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
