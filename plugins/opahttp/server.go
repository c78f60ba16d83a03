package opahttp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ServerConfig configures an OPA server process.
type ServerConfig struct {
	// Binary is the opa executable (see Binary).
	Binary string
	// Policy holds the Rego modules and data.json to load; *_test.rego
	// files and testdata/ and vectors/ directories are left out.
	Policy fs.FS
	// Addr is the 127.0.0.1 address to listen on; default a free port.
	Addr string
	// StartTimeout bounds the wait for the server to answer /health
	// (default 30 s).
	StartTimeout time.Duration
	Logger       *slog.Logger
}

// Server is a running `opa run --server`.
type Server struct {
	cmd    *exec.Cmd
	url    string
	dir    string
	stderr *lockedBuffer
	done   chan struct{}
	log    *slog.Logger
	once   sync.Once
}

// StartServer writes the policy to a temporary directory and starts `opa
// run --server` on it, listening on 127.0.0.1 only, with the version check
// against GitHub off (no outbound network). It returns once the server
// answers /health. ctx bounds the start only; stop the server with Close.
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	if cfg.Binary == "" || cfg.Policy == nil {
		return nil, errors.New("opahttp: a binary and a policy are required")
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	dir, err := os.MkdirTemp("", "pbac-opa-policy-")
	if err != nil {
		return nil, fmt.Errorf("opahttp: %w", err)
	}
	if err := writePolicy(cfg.Policy, dir); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	addr := cfg.Addr
	if addr == "" {
		if addr, err = freeAddr(); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
	s := &Server{url: "http://" + addr, dir: dir, stderr: &lockedBuffer{}, done: make(chan struct{}), log: cfg.Logger}
	s.cmd = exec.Command(cfg.Binary, "run", "--server", "--addr", addr,
		"--skip-version-check", "--log-level", "error", "--log-level-request", "error", dir)
	s.cmd.Stdout = s.stderr
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("opahttp: start %s: %w", cfg.Binary, err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()
	if err := s.waitHealthy(ctx, cfg.StartTimeout); err != nil {
		_ = s.Close()
		return nil, err
	}
	cfg.Logger.Debug("opa server up", "url", s.url, "pid", s.cmd.Process.Pid)
	return s, nil
}

// URL is the server's base URL, e.g. "http://127.0.0.1:38211".
func (s *Server) URL() string { return s.url }

// PID is the server process's id (for its CPU time, say).
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Close stops the server (SIGTERM, then SIGKILL after 5 s) and removes its
// policy directory.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		select {
		case <-s.done:
		default:
			_ = s.cmd.Process.Signal(os.Interrupt)
			select {
			case <-s.done:
			case <-time.After(5 * time.Second):
				_ = s.cmd.Process.Kill()
				<-s.done
			}
		}
		err = os.RemoveAll(s.dir)
	})
	return err
}

func (s *Server) waitHealthy(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/health", nil)
		if err != nil {
			return fmt.Errorf("opahttp: %w", err)
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("opahttp: opa exited at start: %s", strings.TrimSpace(s.stderr.String()))
		case <-ctx.Done():
			return fmt.Errorf("opahttp: opa did not answer %s/health: %w (output: %.500s)", s.url, ctx.Err(), s.stderr.String())
		case <-tick.C:
		}
	}
}

// writePolicy copies the non-test Rego modules and data.json of fsys to dir,
// keeping their relative paths.
func writePolicy(fsys fs.FS, dir string) error {
	n := 0
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != "." && (d.Name() == "testdata" || d.Name() == "vectors" || strings.HasPrefix(d.Name(), ".")) {
				return fs.SkipDir
			}
			return nil
		}
		rego := strings.HasSuffix(p, ".rego") && !strings.HasSuffix(p, "_test.rego")
		if !rego && p != "data.json" {
			return nil
		}
		raw, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(path.Clean(p)))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return err
		}
		if rego {
			n++
		}
		return os.WriteFile(dst, raw, 0o600)
	})
	if err != nil {
		return fmt.Errorf("opahttp: writing the policy: %w", err)
	}
	if n == 0 {
		return errors.New("opahttp: the policy has no Rego modules")
	}
	return nil
}

// freeAddr picks a free 127.0.0.1 port. Another process may take it before
// opa binds it; StartServer then fails and says so.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("opahttp: pick a port: %w", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr, nil
}

// lockedBuffer collects the process's output, bounded to its first 64 KiB.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := 64<<10 - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
