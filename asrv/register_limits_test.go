package asrv_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
)

// registerFrom posts a registration from a client address through the
// AS's handler and returns the status and Retry-After.
func (ta *testAS) registerFrom(addr string, meta map[string]any) (int, string, map[string]any) {
	ta.t.Helper()
	raw, _ := json.Marshal(meta)
	req := httptest.NewRequest(http.MethodPost, asrv.PathRegister, bytes.NewReader(raw))
	req.RemoteAddr = addr
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	ta.as.Handler().ServeHTTP(rec, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, rec.Header().Get("Retry-After"), out
}

var anonymousClient = map[string]any{"redirect_uris": []string{"http://127.0.0.1/cb"}, "token_endpoint_auth_method": "none"}

// TestRegistrationRateLimitPerAddress: the 1,000 anonymous
// registrations in 2.9 s. One address gets its burst, then 429 with
// Retry-After until the interval has passed; another address is not held
// back; invalid registrations count too.
func TestRegistrationRateLimitPerAddress(t *testing.T) {
	clock := &testClock{t: time.Now()}
	ta := newTestAS(t, func(c *asrv.Config) {
		c.Now = clock.now
		c.Registration = asrv.RegistrationLimits{PerAddressBurst: 5, PerAddressInterval: time.Minute}
	})
	for i := range 4 {
		if status, _, out := ta.registerFrom("192.0.2.1:5000", anonymousClient); status != http.StatusCreated {
			t.Fatalf("registration %d: %d %v", i, status, out)
		}
	}
	if status, _, _ := ta.registerFrom("192.0.2.1:5001", map[string]any{"redirect_uris": []string{"http://evil.example/cb"}}); status != http.StatusBadRequest {
		t.Fatalf("an invalid registration: %d", status)
	}
	status, wait, out := ta.registerFrom("192.0.2.1:5002", anonymousClient)
	if status != http.StatusTooManyRequests || wait != "60" || out["error"] != "temporarily_unavailable" {
		t.Fatalf("after the burst: %d Retry-After %q %v, want 429 after 60 s", status, wait, out)
	}
	if status, _, _ := ta.registerFrom("[2001:db8::1]:1", anonymousClient); status != http.StatusCreated {
		t.Fatalf("another address: %d", status)
	}
	if status, _, _ := ta.registerFrom("[2001:db8::2]:1", anonymousClient); status != http.StatusCreated {
		t.Fatalf("another host of the same /64 (one burst of 5 for the prefix): %d", status)
	}
	clock.add(time.Minute)
	if status, _, _ := ta.registerFrom("192.0.2.1:5003", anonymousClient); status != http.StatusCreated {
		t.Fatalf("after the interval: %d", status)
	}
}

// TestRegistrationCapsAndExpiry: unverified registrations that never got a
// code or token are capped apart from the total, and deleted once their
// time is up (counting against nothing any more); verified ones and used
// ones stay.
func TestRegistrationCapsAndExpiry(t *testing.T) {
	clock := &testClock{t: time.Now()}
	ta := newTestAS(t, func(c *asrv.Config) {
		c.Now = clock.now
		c.Registration = asrv.RegistrationLimits{PerAddressBurst: 1000, MaxPending: 3, MaxClients: 6, PendingTTL: time.Hour}
	})
	ctx := context.Background()
	var pending []string
	for i := range 3 {
		status, _, out := ta.registerFrom(fmt.Sprintf("192.0.2.%d:1", i), anonymousClient)
		if status != http.StatusCreated {
			t.Fatalf("unverified %d: %d %v", i, status, out)
		}
		pending = append(pending, out["client_id"].(string))
	}
	status, wait, out := ta.registerFrom("192.0.2.9:1", anonymousClient)
	if status != http.StatusServiceUnavailable || wait == "" || out["error"] != "temporarily_unavailable" {
		t.Fatalf("a 4th pending registration: %d %q %v, want 503 with Retry-After", status, wait, out)
	}
	verified := func() int {
		status, _, _ := ta.registerFrom("192.0.2.10:1", map[string]any{"client_name": "ci", "grant_types": []string{"client_credentials"},
			"token_endpoint_auth_method": "client_secret_basic", "software_statement": ta.statement("ci-bot", false)})
		return status
	}
	for i := range 3 {
		if got := verified(); got != http.StatusCreated {
			t.Fatalf("verified %d (not pending: not capped by MaxPending): %d", i, got)
		}
	}
	if got := verified(); got != http.StatusServiceUnavailable {
		t.Fatalf("the 7th client: %d, want 503 (MaxClients 6)", got)
	}

	clock.add(time.Hour + time.Minute)
	status, _, out = ta.registerFrom("192.0.2.11:1", anonymousClient)
	if status != http.StatusCreated {
		t.Fatalf("after the pending ones expired: %d %v", status, out)
	}
	for _, id := range pending {
		if _, err := ta.store.Client(ctx, id); err == nil {
			t.Errorf("expired pending client %s is still registered", id)
		}
	}
	if total, p, err := ta.store.CountClients(ctx); err != nil || total != 4 || p != 1 {
		t.Fatalf("after the sweep: %d clients, %d pending (%v); want the 3 verified and the new one", total, p, err)
	}
}
