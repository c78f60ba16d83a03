package stack

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
)

// TestAdminClientSaysWhatAnApprovalWouldGrant: the admin API's view of a
// client says whether it would act for no person (client_credentials),
// whether an approval covers that, and who vouched for it at sign-in.
func TestAdminClientSaysWhatAnApprovalWouldGrant(t *testing.T) {
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		client asrv.Client
		want   map[string]any
	}{
		{"a person's agent", asrv.Client{ID: "a", GrantTypes: []string{"authorization_code"}, TokenEndpointAuthMethod: "none"},
			map[string]any{"acts_for_no_person": false, "grant_types": []any{"authorization_code"}, "token_endpoint_auth_method": "none"}},
		{"a machine approved for machine use", asrv.Client{ID: "m", GrantTypes: []string{"client_credentials"}, TokenEndpointAuthMethod: "client_secret_basic",
			Review: &asrv.ClientReview{Status: asrv.ReviewApproved, Provider: "ci-bot", By: "admin", At: at, Machine: true}},
			map[string]any{"acts_for_no_person": true, "review": map[string]any{"status": "approved", "provider": "ci-bot", "by": "admin", "at": "2026-12-01T09:00:00Z", "machine": true}}},
		{"a vouched agent", asrv.Client{ID: "v", GrantTypes: []string{"authorization_code"}, Vouch: &asrv.ClientVouch{Subject: "alice", Provider: "claude-code", At: at}},
			map[string]any{"acts_for_no_person": false, "vouch": map[string]any{"subject": "alice", "provider": "claude-code", "at": "2026-12-01T09:00:00Z"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := json.Marshal(adminClient(&tc.client, "pending", false))
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatal(err)
			}
			for k, want := range tc.want {
				if g, _ := json.Marshal(got[k]); string(g) != mustJSON(t, want) {
					t.Errorf("%s = %s; want %s", k, g, mustJSON(t, want))
				}
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
