package stack

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/config"
)

// TestLoadConfigASrv: the asrv: block resolves to the authorization
// server's introspectors (secrets read from files), registration limits
// and statement verification; every mistake is reported.
func TestLoadConfigASrv(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "gw")
	_ = os.WriteFile(secret, []byte("gateway-secret-0123456789\n"), 0o600)
	p := filepath.Join(dir, "c.yaml")
	_ = os.WriteFile(p, []byte(`asrv:
  introspection_clients:
    - client_id: gateway
      client_secret_file: `+secret+`
    - client_id: registered-rs
  registration:
    per_address: 5
    per_address_interval: 1m
    max_clients: 100
    max_unverified: 10
    max_unverified_per_address: 3
    unverified_ttl: 2h
  statements:
    max_lifetime: 48h
    revoked_ids: [jti-1]
    revoked_keys: [kid-1]
`), 0o600)
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	in, err := asIntrospectors(cfg.ASrv)
	if err != nil || len(in) != 2 || in[0] != (asrv.Introspector{ClientID: "gateway", Secret: "gateway-secret-0123456789"}) ||
		in[1] != (asrv.Introspector{ClientID: "registered-rs"}) {
		t.Fatalf("introspectors %+v %v", in, err)
	}
	l, err := asRegistrationLimits(cfg.ASrv)
	if err != nil || l != (asrv.RegistrationLimits{PerAddressBurst: 5, PerAddressInterval: time.Minute, MaxClients: 100, MaxPending: 10, MaxPendingPerAddress: 3, PendingTTL: 2 * time.Hour}) {
		t.Fatalf("limits %+v %v", l, err)
	}
	v, err := asStatementVerifier(cfg.ASrv, nil)
	if err != nil || !v.Revoked(asrv.AgentClaims{Verified: true, StatementID: "jti-1"}) || !v.Revoked(asrv.AgentClaims{Verified: true, KeyID: "kid-1"}) ||
		v.Revoked(asrv.AgentClaims{Verified: true, StatementID: "jti-2", KeyID: "kid-2"}) {
		t.Fatalf("statement verifier %v", err)
	}

	var none *config.ASrv
	if in, err := asIntrospectors(none); err != nil || in != nil {
		t.Fatalf("no asrv block: %v %v", in, err)
	}

	_ = os.WriteFile(p, []byte(`asrv:
  introspection_clients:
    - client_secret_file: /does/not/exist
    - client_id: a
    - client_id: a
  registration:
    per_address: -1
    unverified_ttl: soon
  statements:
    max_lifetime: -1h
`), 0o600)
	_, err = config.Load(p)
	for _, want := range []string{"client_id is required", "/does/not/exist", `"a" is listed twice`, "must not be negative", "unverified_ttl", "max_lifetime"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to say %q", err, want)
		}
	}
}
