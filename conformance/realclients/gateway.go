package realclients

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/conformance/clientcheck"
)

// Gateway is a real `pbac up` (the demo tenant) on 127.0.0.1 with a fresh
// data dir, behind a recording observer whose address is the gateway's
// public URL and issuer.
type Gateway struct {
	Target
	cmd     *exec.Cmd
	scanned sync.WaitGroup
	srv     *http.Server
	served  chan struct{}
	dataDir string
}

// StartGateway runs bin (the pbac binary) as `pbac up`, with env added to
// its environment, and waits until it serves. Its stderr goes to stderr
// (nil: discarded).
func StartGateway(ctx context.Context, bin string, stderr io.Writer, env ...string) (_ *Gateway, err error) {
	g := &Gateway{}
	defer func() {
		if err != nil {
			g.Close()
		}
	}()
	if g.dataDir, err = os.MkdirTemp("", "pbac-realclients-"); err != nil {
		return nil, fmt.Errorf("make the data dir: %w", err)
	}
	pub, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the observer: %w", err)
	}
	base := "http://" + pub.Addr().String()
	port, err := freePort()
	if err != nil {
		_ = pub.Close()
		return nil, err
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	g.cmd = exec.Command(bin, "up", "--listen", listen, "--admin-listen", "127.0.0.1:0", "--data-dir", g.dataDir, "--log-level", "warn")
	g.cmd.Env = append(append(os.Environ(), "PBAC_PUBLIC_URL="+base), env...)
	g.cmd.Stderr = stderr
	stdout, err := g.cmd.StdoutPipe()
	if err != nil {
		_ = pub.Close()
		return nil, err
	}
	if err := g.cmd.Start(); err != nil {
		_ = pub.Close()
		g.cmd = nil
		return nil, fmt.Errorf("start pbac up: %w", err)
	}
	ready, exited := make(chan struct{}), make(chan struct{})
	claudeLine, adminURL := "", ""
	g.scanned.Add(1)
	go func() {
		defer g.scanned.Done()
		defer close(exited)
		var once sync.Once
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			select {
			case <-ready: // claudeLine is the caller's now
			default:
				if strings.HasPrefix(line, "claude mcp add ") && strings.Contains(line, " --client-id ") && strings.HasSuffix(line, "/mcp") {
					claudeLine = line
				}
				if rest, ok := strings.CutPrefix(line, "admin API"); ok {
					if f := strings.Fields(rest); len(f) > 0 {
						adminURL = strings.TrimSuffix(f[0], "/admin/status")
					}
				}
			}
			if strings.HasPrefix(line, "Press Ctrl-C") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	select {
	case <-ready:
	case <-exited:
		_ = pub.Close()
		return nil, errors.New("pbac up exited before it served")
	case <-time.After(90 * time.Second):
		_ = pub.Close()
		return nil, errors.New("pbac up did not serve within 90 s")
	case <-ctx.Done():
		_ = pub.Close()
		return nil, ctx.Err()
	}
	g.ClientID, err = demoAgent(filepath.Join(g.dataDir, "demo-agents.json"), "claude-code")
	if err != nil {
		_ = pub.Close()
		return nil, err
	}
	up, _ := url.Parse("http://" + listen)
	g.Observer = clientcheck.NewObserver(clientcheck.ObserverConfig{Upstream: up, SignInUser: "alice", SignInPassword: asrv.DemoPassword})
	g.Base = base
	g.ClaudeAdd, g.AdminURL = claudeLine, adminURL
	tok, err := os.ReadFile(filepath.Join(g.dataDir, "admin-token"))
	if err != nil {
		_ = pub.Close()
		return nil, fmt.Errorf("read the admin token: %w", err)
	}
	g.AdminToken = strings.TrimSpace(string(tok))
	g.AuditFile = filepath.Join(g.dataDir, "audit", "audit.jsonl")
	g.srv = &http.Server{Handler: g.Observer, ReadHeaderTimeout: 10 * time.Second}
	g.served = make(chan struct{})
	go func() {
		defer close(g.served)
		_ = g.srv.Serve(pub)
	}()
	return g, nil
}

// Close stops the observer and pbac up (interrupt, then kill after 15 s),
// waits for both and removes the data dir.
func (g *Gateway) Close() {
	if g.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if g.srv.Shutdown(ctx) != nil {
			_ = g.srv.Close()
		}
		cancel()
		<-g.served
	}
	if g.cmd != nil {
		_ = g.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = g.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = g.cmd.Process.Kill()
			<-done
		}
		g.scanned.Wait()
	}
	if g.dataDir != "" {
		_ = os.RemoveAll(g.dataDir)
	}
}

// demoAgent is the client id of the demo agent name in path.
func demoAgent(path, name string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read the demo agents: %w", err)
	}
	var agents []struct {
		Name     string `json:"name"`
		ClientID string `json:"client_id"`
	}
	if err := json.Unmarshal(raw, &agents); err != nil {
		return "", fmt.Errorf("read the demo agents: %w", err)
	}
	for _, a := range agents {
		if a.Name == name && a.ClientID != "" {
			return a.ClientID, nil
		}
	}
	return "", fmt.Errorf("no %s agent in %s", name, path)
}
