package stack

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/asrv/store/badger"
	"github.com/pbac-gateway/pbac/gateway"
)

// TestReadiness: ready with an open store and an active policy; 503 naming
// the store once it is closed, the policy when none is active, and the
// drain once it began.
func TestReadiness(t *testing.T) {
	ctx := t.Context()
	store, err := badger.Open(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	active := true
	r := &readiness{policy: func() bool { return active }, store: store.Ping}
	status := func() (int, []string) {
		code, body := gateway.ReadyStatus(ctx, r.check)
		var v struct {
			Ready    bool     `json:"ready"`
			NotReady []string `json:"not_ready"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if v.Ready != (code == 200) {
			t.Fatalf("code %d with body %s", code, body)
		}
		return code, v.NotReady
	}
	if code, why := status(); code != 200 {
		t.Fatalf("ready: %d %v", code, why)
	}
	active = false
	if code, why := status(); code != 503 || len(why) != 1 || !strings.HasPrefix(why[0], "policy:") {
		t.Fatalf("no policy: %d %v", code, why)
	}
	active = true
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	if code, why := status(); code != 503 || len(why) != 1 || !strings.HasPrefix(why[0], "token store:") {
		t.Fatalf("store closed: %d %v", code, why)
	}
	drainWait(context.Background(), r, 0, slog.New(slog.DiscardHandler))
	if code, why := status(); code != 503 || len(why) != 2 || !strings.HasPrefix(why[0], "draining") {
		t.Fatalf("draining: %d %v", code, why)
	}
}
