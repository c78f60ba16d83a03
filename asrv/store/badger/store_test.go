package badger_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/asrv/store/badger"
	"github.com/pbac-gateway/pbac/asrv/storetest"
)

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func openMem(t *testing.T, opts ...badger.Option) *badger.Store {
	t.Helper()
	s, err := badger.Open(context.Background(), "", append([]badger.Option{badger.WithLogger(quietLogger())}, opts...)...)
	if err != nil {
		t.Fatalf("Open(memory): %v", err)
	}
	return s
}

func openDisk(t *testing.T, dir string, opts ...badger.Option) *badger.Store {
	t.Helper()
	s, err := badger.Open(context.Background(), dir, append([]badger.Option{badger.WithLogger(quietLogger())}, opts...)...)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return s
}

// TestBadgerDurableAcrossReopen writes tokens, closes, reopens and finds
// them all, with their state.
func TestBadgerDurableAcrossReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openDisk(t, dir)
	c := storetest.NewClient("agent-1")
	if err := s.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	const n = 100
	var ats, rts []string
	for i := range n {
		r := storetest.NewRequest(c, fmt.Sprintf("req-%d", i))
		at, rt := rand.Text(), rand.Text()
		if err := s.CreateAccessTokenSession(ctx, at, r); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateRefreshTokenSession(ctx, rt, at, r); err != nil {
			t.Fatal(err)
		}
		ats, rts = append(ats, at), append(rts, rt)
	}
	code := rand.Text()
	if err := s.CreateAuthorizeCodeSession(ctx, code, storetest.NewRequest(c, "req-code")); err != nil {
		t.Fatal(err)
	}
	if err := s.InvalidateAuthorizeCodeSession(ctx, code); err != nil {
		t.Fatal(err)
	}
	if err := s.RotateRefreshToken(ctx, "req-0", rts[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.GetAccessTokenSession(ctx, ats[1], nil); err == nil {
		t.Fatal("a closed store answered")
	}

	s = openDisk(t, dir)
	defer s.Close()
	if _, err := s.Client(ctx, "agent-1"); err != nil {
		t.Fatalf("client after reopen: %v", err)
	}
	for i := range n {
		if i == 0 {
			if _, err := s.GetAccessTokenSession(ctx, ats[0], nil); !errors.Is(err, fosite.ErrNotFound) {
				t.Errorf("access token of a rotated grant after reopen: %v", err)
			}
			if _, err := s.GetRefreshTokenSession(ctx, rts[0], nil); !errors.Is(err, fosite.ErrInactiveToken) {
				t.Errorf("rotated refresh token after reopen: %v", err)
			}
			continue
		}
		if _, err := s.GetAccessTokenSession(ctx, ats[i], nil); err != nil {
			t.Errorf("access token %d after reopen: %v", i, err)
		}
		if _, err := s.GetRefreshTokenSession(ctx, rts[i], nil); err != nil {
			t.Errorf("refresh token %d after reopen: %v", i, err)
		}
	}
	if r, err := s.GetAuthorizeCodeSession(ctx, code, nil); !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) || r == nil {
		t.Errorf("invalidated code after reopen: %v, %v", r, err)
	}
}

const killHelperEnv = "ASRV_BADGER_KILL_HELPER_DIR"

// TestBadgerKillHelper is the child of TestBadgerSurvivesKill: it writes
// tokens forever, printing each signature once its write has returned.
func TestBadgerKillHelper(t *testing.T) {
	dir := os.Getenv(killHelperEnv)
	if dir == "" {
		t.Skip("helper process only")
	}
	ctx := context.Background()
	s, err := badger.Open(ctx, dir, badger.WithLogger(quietLogger()))
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	c := storetest.NewClient("agent-1")
	if err := s.CreateClient(ctx, c); err != nil && !errors.Is(err, asrv.ErrClientExists) {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	for i := 0; ; i++ {
		sig := rand.Text()
		if err := s.CreateAccessTokenSession(ctx, sig, storetest.NewRequest(c, fmt.Sprintf("r%d", i))); err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		fmt.Println("OK", sig)
	}
}

// TestBadgerSurvivesKill kills a writer with SIGKILL and checks that every
// token whose write had returned is there after reopening.
func TestBadgerSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBadgerKillHelper$", "-test.v=false")
	cmd.Env = append(os.Environ(), killHelperEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var written []string
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(written) < 40 {
		line := sc.Text()
		if sig, ok := strings.CutPrefix(line, "OK "); ok {
			written = append(written, sig)
		} else if strings.HasPrefix(line, "ERR") {
			t.Fatalf("helper: %s", line)
		}
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if len(written) < 40 {
		t.Fatalf("helper wrote only %d tokens", len(written))
	}

	s := openDisk(t, dir)
	defer s.Close()
	for _, sig := range written {
		if _, err := s.GetAccessTokenSession(context.Background(), sig, nil); err != nil {
			t.Errorf("token acknowledged before kill -9 is gone: %v", err)
		}
	}
}

// TestBadgerNoSecretsAtRest puts secrets into request forms and checks that
// neither the live values nor the database files contain them.
func TestBadgerNoSecretsAtRest(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openDisk(t, dir)
	c := storetest.NewClient("agent-1")
	if err := s.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	storetest.WriteEveryKind(t, s, c, 20)
	var entries int
	if err := s.RawEntriesForTest(func(k, v []byte) {
		entries++
		for _, secret := range storetest.SensitiveValues() {
			if bytes.Contains(k, []byte(secret)) || bytes.Contains(v, []byte(secret)) {
				t.Errorf("entry %q holds %q", k, secret)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	if entries < 20*4 {
		t.Fatalf("only %d entries", entries)
	}
	// The form fosite needs is still there (proves the scan saw request data).
	var sawChallenge bool
	_ = s.RawEntriesForTest(func(_, v []byte) {
		sawChallenge = sawChallenge || bytes.Contains(v, []byte("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"))
	})
	if !sawChallenge {
		t.Error("the code_challenge was not persisted")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, secret := range storetest.SensitiveValues() {
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s contains %q", path, secret)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestBadgerClockExpiry(t *testing.T) {
	ctx := context.Background()
	clk := storetest.NewClock(time.Now())
	s := openMem(t, badger.WithClock(clk.Now))
	defer s.Close()
	c := storetest.NewClient("agent-1")
	if err := s.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	r := storetest.NewRequest(c, "r1")
	r.Session.(*asrv.Session).SetExpiresAt(fosite.AccessToken, clk.Now().Add(time.Hour))
	r.Session.(*asrv.Session).SetExpiresAt(fosite.RefreshToken, clk.Now().Add(48*time.Hour))
	at, rt := rand.Text(), rand.Text()
	if err := s.CreateAccessTokenSession(ctx, at, r); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRefreshTokenSession(ctx, rt, at, r); err != nil {
		t.Fatal(err)
	}
	if err := s.SetClientAssertionJWT(ctx, "jti", clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	clk.Add(2 * time.Hour)
	if _, err := s.GetAccessTokenSession(ctx, at, nil); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("expired access token: %v", err)
	}
	if _, err := s.ConsumeAccessToken(ctx, at); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("consuming expired access token: %v", err)
	}
	if _, err := s.GetRefreshTokenSession(ctx, rt, nil); err != nil {
		t.Errorf("refresh token within its lifetime: %v", err)
	}
	if err := s.ClientAssertionJWTValid(ctx, "jti"); err != nil {
		t.Errorf("expired jti: %v", err)
	}
	clk.Add(48 * time.Hour)
	if _, err := s.GetRefreshTokenSession(ctx, rt, nil); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("expired refresh token: %v", err)
	}
}

// TestBadgerTamperedValues: garbage in the database reads as not found.
func TestBadgerTamperedValues(t *testing.T) {
	ctx := context.Background()
	s := openMem(t)
	defer s.Close()
	c := storetest.NewClient("agent-1")
	if err := s.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	for i, v := range []string{"", "{", "null", `{"v":1}`, `{"v":2,"id":"r","client_id":"agent-1"}`, `{"v":1,"id":"r","client_id":"agent-1","session":7}`, "\xff\xfe"} {
		sig := fmt.Sprintf("sig-%d", i)
		if err := s.SetRawForTest([]byte("at/"+sig), []byte(v)); err != nil {
			t.Fatal(err)
		}
		if r, err := s.GetAccessTokenSession(ctx, sig, nil); !errors.Is(err, fosite.ErrNotFound) {
			t.Errorf("tampered %q: got %v, %v; want fosite.ErrNotFound", v, r, err)
		}
		if _, err := s.ConsumeAccessToken(ctx, sig); !errors.Is(err, fosite.ErrNotFound) {
			t.Errorf("consume tampered %q: %v", v, err)
		}
		if err := s.DeleteAccessTokenSession(ctx, sig); err != nil {
			t.Errorf("delete tampered %q: %v", v, err)
		}
	}
	// A record naming another client than its key's owner still resolves to
	// the client it names, which must exist.
	if err := s.SetRawForTest([]byte("at/x"), []byte(`{"v":1,"id":"r","client_id":"nobody"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAccessTokenSession(ctx, "x", nil); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("record of an unknown client: %v", err)
	}
}

func TestBadgerUnsupportedSession(t *testing.T) {
	ctx := context.Background()
	s := openMem(t)
	defer s.Close()
	c := storetest.NewClient("agent-1")
	if err := s.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	r := storetest.NewRequest(c, "r")
	r.Session = &fosite.DefaultSession{Subject: "x"}
	if err := s.CreateAccessTokenSession(ctx, "sig", r); err == nil {
		t.Error("stored a session that is not an *asrv.Session")
	}
	r.Session = nil
	if err := s.CreateAccessTokenSession(ctx, "sig", r); err != nil {
		t.Fatalf("nil session: %v", err)
	}
	got, err := s.GetAccessTokenSession(ctx, "sig", nil)
	if err != nil {
		t.Fatal(err)
	}
	if sess, ok := got.GetSession().(*asrv.Session); !ok || sess == nil {
		t.Errorf("session = %T, want a non-nil *asrv.Session", got.GetSession())
	}
}

func TestBadgerGCAndClose(t *testing.T) {
	s := openDisk(t, t.TempDir(), badger.WithGCInterval(5*time.Millisecond))
	time.Sleep(30 * time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

type recordingHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r)
	return nil
}
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

// TestBadgerLogging: Badger's chatter reaches slog, below info.
func TestBadgerLogging(t *testing.T) {
	h := &recordingHandler{}
	s, err := badger.Open(context.Background(), t.TempDir(), badger.WithLogger(slog.New(h)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.recs) == 0 {
		t.Fatal("no Badger log records reached slog")
	}
	for _, r := range h.recs {
		if r.Level >= slog.LevelInfo {
			t.Errorf("Badger logged at %v: %s", r.Level, r.Message)
		}
	}
}

func TestOpenBadgerCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if s, err := badger.Open(ctx, ""); err == nil {
		s.Close()
		t.Fatal("opened with a cancelled context")
	}
	s := openMem(t)
	defer s.Close()
	if err := s.CreateClient(ctx, storetest.NewClient("a")); !errors.Is(err, context.Canceled) {
		t.Errorf("CreateClient with a cancelled context: %v", err)
	}
}

// TestBadgerReadCacheFollowsWrites: an access token read (and so cached)
// is gone on the next read after a revocation, a consumption, the client's
// deletion or its expiry, and a mutated result does not change the next.
func TestBadgerReadCacheFollowsWrites(t *testing.T) {
	ctx := context.Background()
	clk := storetest.NewClock(time.Now())
	s := openMem(t, badger.WithClock(clk.Now))
	defer s.Close()
	c := storetest.NewClient("agent-cache")
	if err := s.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	issue := func(id string) string {
		r := storetest.NewRequest(c, id)
		r.Session.(*asrv.Session).SetExpiresAt(fosite.AccessToken, clk.Now().Add(time.Hour))
		sig := rand.Text()
		if err := s.CreateAccessTokenSession(ctx, sig, r); err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second read is served from the cache
			req, err := s.GetAccessTokenSession(ctx, sig, nil)
			if err != nil {
				t.Fatalf("read %s: %v", id, err)
			}
			req.GrantScope("mutated-by-caller")
		}
		return sig
	}
	gone := func(what, sig string) {
		t.Helper()
		if _, err := s.GetAccessTokenSession(ctx, sig, nil); !errors.Is(err, fosite.ErrNotFound) {
			t.Errorf("after %s: %v, want not found", what, err)
		}
	}

	sig := issue("r-revoke")
	if err := s.RevokeAccessToken(ctx, "r-revoke"); err != nil {
		t.Fatal(err)
	}
	gone("a revocation", sig)

	sig = issue("r-consume")
	if _, err := s.ConsumeAccessToken(ctx, sig); err != nil {
		t.Fatal(err)
	}
	gone("a consumption", sig)

	sig = issue("r-delete")
	if err := s.DeleteAccessTokenSession(ctx, sig); err != nil {
		t.Fatal(err)
	}
	gone("a deletion", sig)

	sig = issue("r-expire")
	req, _ := s.GetAccessTokenSession(ctx, sig, nil)
	if slices.Contains(req.GetGrantedScopes(), "mutated-by-caller") {
		t.Error("a caller's change to a read token reached the next read")
	}
	clk.Add(2 * time.Hour)
	gone("its expiry", sig)

	sig = issue("r-client")
	if err := s.DeleteClient(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	gone("the client's deletion", sig)
}

// TestBadgerReadCacheKeyIsCopied: the gateway's token strings alias
// fasthttp's reused request buffers. A signature whose bytes change after
// the read must not make the cache answer another token with this one's
// record (this once handed an agent the previous agent's client).
func TestBadgerReadCacheKeyIsCopied(t *testing.T) {
	ctx := context.Background()
	s := openMem(t)
	defer s.Close()
	var sigs, ids []string
	for _, id := range []string{"agent-first", "agent-second"} {
		c := storetest.NewClient(id)
		if err := s.CreateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
		r := storetest.NewRequest(c, "req-"+id)
		r.Session.(*asrv.Session).SetExpiresAt(fosite.AccessToken, time.Now().Add(time.Hour))
		sig := rand.Text() // same length for both
		if err := s.CreateAccessTokenSession(ctx, sig, r); err != nil {
			t.Fatal(err)
		}
		sigs, ids = append(sigs, sig), append(ids, c.ID)
	}
	buf := []byte(sigs[0])
	aliased := unsafe.String(&buf[0], len(buf))
	if _, err := s.GetAccessTokenSession(ctx, aliased, nil); err != nil {
		t.Fatal(err)
	}
	copy(buf, sigs[1]) // the buffer is reused for the next request
	req, err := s.GetAccessTokenSession(ctx, sigs[1], nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := req.GetClient().GetID(); got != ids[1] {
		t.Fatalf("the second token resolved to client %s, want %s", got, ids[1])
	}
}
