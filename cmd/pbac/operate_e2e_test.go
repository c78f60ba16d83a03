package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/internal/certreload/certtest"
)

var (
	upGateway = regexp.MustCompile(`^\s+gateway\s+(https?://\S+)`)
	upAdmin   = regexp.MustCompile(`^\s+admin API\s+(https?://[^/\s]+)`)
)

// startUpArgs runs the real `pbac up` with extra arguments and environment
// and returns the gateway and admin base URLs once it is up.
func startUpArgs(t *testing.T, env []string, args ...string) (cmd *exec.Cmd, gw, admin string) {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatalf("build pbac: %v", err)
	}
	cmd = exec.Command(bin, append([]string{"up", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-level", "warn"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	type urls struct{ gw, admin string }
	ready := make(chan urls, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		var u urls
		for sc.Scan() {
			if m := upGateway.FindStringSubmatch(sc.Text()); m != nil {
				u.gw = m[1]
			}
			if m := upAdmin.FindStringSubmatch(sc.Text()); m != nil {
				u.admin = m[1]
			}
			if strings.HasPrefix(sc.Text(), "Press Ctrl-C") {
				ready <- u
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case u := <-ready:
		return cmd, u.gw, u.admin
	case <-time.After(90 * time.Second):
		t.Fatal("pbac up did not come up")
		return nil, "", ""
	}
}

// TestUpTLSReloadAndDrain runs `pbac up` with TLS on both listeners (the
// gateway's from flags, the admin's from the environment): both serve
// https to a client trusting the certificate, /healthz and /readyz answer,
// a replaced certificate is served without a restart, and on SIGTERM
// /readyz turns 503 while the listener still serves, an in-flight call
// finishes, and the process exits cleanly.
func TestUpTLSReloadAndDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "gw.crt"), filepath.Join(dir, "gw.key")
	acf, akf := filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key")
	first, second, adminPair := certtest.New(t, "first"), certtest.New(t, "second"), certtest.New(t, "admin")
	first.Write(t, cf, kf)
	adminPair.Write(t, acf, akf)
	cmd, gw, admin := startUpArgs(t, []string{"PBAC_ADMIN_TLS_CERT=" + acf, "PBAC_ADMIN_TLS_KEY=" + akf},
		"--data-dir", filepath.Join(dir, "data"), "--tls-cert", cf, "--tls-key", kf, "--drain-delay", "2s")
	if !strings.HasPrefix(gw, "https://") || !strings.HasPrefix(admin, "https://") {
		t.Fatalf("gateway %s, admin %s: want https for both", gw, admin)
	}
	pool := x509.NewCertPool()
	for _, p := range []certtest.Pair{first, second, adminPair} {
		pool.AddCert(p.Cert)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, DisableKeepAlives: true}}
	get := func(url string) (int, string, string) {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), resp.TLS.PeerCertificates[0].Subject.CommonName
	}
	for _, u := range []string{gw + "/healthz", gw + "/readyz", admin + "/healthz", admin + "/readyz"} {
		if code, body, _ := get(u); code != 200 {
			t.Fatalf("GET %s: %d %s", u, code, body)
		}
	}
	if _, _, cn := get(admin + "/healthz"); cn != "admin" {
		t.Fatalf("admin listener serves %q", cn)
	}
	// TLS 1.1 is refused.
	if _, err := tls.Dial("tcp", strings.TrimPrefix(gw, "https://"), &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("a TLS 1.1 handshake succeeded")
	}

	// Replace the gateway's pair; the next connections get the new one.
	second.Write(t, cf, kf)
	later := time.Now().Add(2 * time.Second)
	_ = os.Chtimes(cf, later, later)
	_ = os.Chtimes(kf, later, later)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, _, cn := get(gw + "/healthz"); cn == "second" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the replaced certificate was not served within 15 s")
		}
		time.Sleep(300 * time.Millisecond)
	}

	// An in-flight call: headers and half a body now, the rest after the
	// drain began.
	conn, err := tls.Dial("tcp", strings.TrimPrefix(gw, "https://"), &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	fmt.Fprintf(conn, "POST /mcp HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: %d\r\n\r\n%s",
		strings.TrimPrefix(gw, "https://"), len(body), body[:10])
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	termAt := time.Now()
	// /readyz turns 503 first, while the listener still serves.
	deadline = time.Now().Add(1500 * time.Millisecond)
	for {
		code, b, _ := get(gw + "/readyz")
		if code == http.StatusServiceUnavailable && strings.Contains(b, "draining") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %s after SIGTERM", code, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _, _ := get(admin + "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("admin /readyz = %d while draining", code)
	}
	// Past the drain delay the listener stops accepting; the in-flight call
	// is still served.
	time.Sleep(time.Until(termAt.Add(2500 * time.Millisecond)))
	if c, err := tls.Dial("tcp", strings.TrimPrefix(gw, "https://"), &tls.Config{RootCAs: pool}); err == nil {
		c.Close()
		t.Error("the gateway listener still accepts after the drain delay")
	}
	if _, err := conn.Write([]byte(body[10:])); err != nil {
		t.Fatalf("finish the in-flight call: %v", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("the in-flight call got no answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("in-flight call: %d, want the gateway's 401 (no token)", resp.StatusCode)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("pbac up exited with %v after SIGTERM", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("pbac up did not exit within 20 s of SIGTERM")
	}
}

// TestStaticBuild: the binary builds without cgo, as the container file
// builds it.
func TestStaticBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("a full build")
	}
	cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(t.TempDir(), "pbac"), ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}
}
