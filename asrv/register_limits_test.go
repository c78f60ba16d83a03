package asrv_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
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

// TestPendingRegistrationsPerAddress: with the default limits one address
// holds at most 50 unverified registrations that obtained no code or token
// (a twentieth of the 1,000 there may be), then 429 until one of them is
// no longer pending: approved, say, or deleted when its 24 h are up.
// Otherwise one address, one registration every 20 s, would hold the
// whole cap within hours for ever, and every unverified registration from
// anywhere else would be 503. Another address, and a verified
// registration from the same one, are not held back.
func TestPendingRegistrationsPerAddress(t *testing.T) {
	clock := &testClock{t: time.Now()}
	ta := newTestAS(t, func(c *asrv.Config) { c.Now = clock.now })
	const addr = "203.0.113.7:4444"
	// register registers from addr, waiting out the rate limit, until it
	// is refused otherwise.
	register := func() (int, string, map[string]any) {
		t.Helper()
		for {
			status, wait, out := ta.registerFrom(addr, anonymousClient)
			if status != http.StatusTooManyRequests || !strings.Contains(fmt.Sprint(out["error_description"]), "too many registrations from this address") {
				return status, wait, out
			}
			clock.add(20 * time.Second)
		}
	}
	var ids []string
	for {
		status, wait, out := register()
		if status == http.StatusCreated {
			ids = append(ids, out["client_id"].(string))
			continue
		}
		if status != http.StatusTooManyRequests || wait == "" || out["error"] != "temporarily_unavailable" ||
			!strings.Contains(fmt.Sprint(out["error_description"]), "unverified registrations from this address") {
			t.Fatalf("after %d pending registrations: %d Retry-After %q %v, want 429 for the address's pending ones", len(ids), status, wait, out)
		}
		break
	}
	if len(ids) != 50 {
		t.Fatalf("one address holds %d pending registrations, want 50", len(ids))
	}
	if status, _, out := ta.registerFrom("198.51.100.1:1", anonymousClient); status != http.StatusCreated {
		t.Fatalf("an unverified registration from another address: %d %v", status, out)
	}
	verified := map[string]any{"client_name": "ci", "grant_types": []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic", "software_statement": ta.statement("ci-bot", false)}
	clock.add(20 * time.Second)
	if status, _, out := ta.registerFrom(addr, verified); status != http.StatusCreated {
		t.Fatalf("a verified registration from the address (never pending): %d %v", status, out)
	}

	// An approved client is no longer pending: its place is free.
	if _, err := ta.as.ReviewClient(t.Context(), ids[0], asrv.ClientReview{Status: asrv.ReviewApproved, Provider: "claude-code", By: "admin"}); err != nil {
		t.Fatal(err)
	}
	if status, _, out := register(); status != http.StatusCreated {
		t.Fatalf("after one of the address's clients was approved: %d %v", status, out)
	}
	if status, _, _ := register(); status != http.StatusTooManyRequests {
		t.Fatalf("the address's 51st pending registration: %d, want 429", status)
	}
	// Pending clients whose time is up are deleted, and count no more.
	clock.add(24*time.Hour + time.Minute)
	if status, _, out := register(); status != http.StatusCreated {
		t.Fatalf("after the address's pending clients expired: %d %v", status, out)
	}
}
