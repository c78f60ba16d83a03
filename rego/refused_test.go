package rego

import (
	"io/fs"
	"maps"
	"slices"
	"testing"

	"github.com/pbac-gateway/pbac/contract"
)

// TestRefusedForEverySubjectIsExact holds pbac/token's
// refused_for_every_subject, which the authorization server asks before
// anyone signs in, to what it claims on the shipped data: for every client
// and requested scopes, it names a refusal exactly when no person —
// whatever their roles and groups — would be granted a token. Sound: a
// client refused on the first page is refused after any sign-in. Complete:
// a client not refused there is granted for someone (the person holding
// every role), so the first page never hides a refusal the password would
// only reveal.
func TestRefusedForEverySubjectIsExact(t *testing.T) {
	r := shippedReference(t)
	raw, err := fs.ReadFile(Sources(), "data.json")
	if err != nil {
		t.Fatal(err)
	}
	data, err := contract.ParseData(raw)
	if err != nil {
		t.Fatal(err)
	}
	clients := []map[string]any{
		{"client_id": "self-registered", "verified": false},
		{"client_id": "claims-a-provider", "agent_provider": "claude-code", "verified": false},
		{"client_id": "cimd", "verified": false, "attestation": map[string]any{"kind": "cimd", "origin": "https://claude.ai"}},
		{"client_id": "verified-unknown-provider", "agent_provider": "nobody-knows", "verified": true},
	}
	for _, tier := range slices.Sorted(maps.Keys(data.Agents.TrustTiers)) {
		for _, p := range data.Agents.TrustTiers[tier] {
			clients = append(clients, map[string]any{"client_id": p + "-client", "agent_provider": p, "verified": true})
		}
	}
	requests := [][]string{nil, {"nowhere:read"}, {"drive:read", "gitlab:approve"}}
	for _, sc := range data.Scopes() {
		requests = append(requests, []string{sc})
	}
	roles := slices.Sorted(maps.Keys(data.Roles))
	subjects := []map[string]any{
		{"sub": "nobody", "roles": []string{}},
		{"sub": "everyone", "roles": roles},
	}
	for _, role := range roles {
		subjects = append(subjects, map[string]any{"sub": "holds-" + role, "roles": []string{role}})
	}
	for _, g := range slices.Sorted(maps.Keys(data.People.GroupRoles)) {
		subjects = append(subjects, map[string]any{"sub": "in-" + g, "roles": []string{}, "groups": []string{g}})
	}

	refusedSeen, grantedSeen := 0, 0
	for _, c := range clients {
		for _, scopes := range requests {
			req := map[string]any{"grant_type": "authorization_code", "scopes": scopes}
			before := decide(t, r, "pbac/token", map[string]any{"client": c, "request": req, "now": 1700000100})
			refused, ok := before["refused_for_every_subject"].([]any)
			if !ok {
				t.Fatalf("%v %v: refused_for_every_subject is not an array: %v", c, scopes, before)
			}
			var grantedFor []string
			for _, s := range subjects {
				after := decide(t, r, "pbac/token", map[string]any{"client": c, "subject": s, "request": req, "now": 1700000100})
				if after["allow"] == true {
					grantedFor = append(grantedFor, s["sub"].(string))
				}
				if got, _ := after["refused_for_every_subject"].([]any); !slices.Equal(got, refused) {
					t.Errorf("client %v, scopes %v: refused_for_every_subject %v with subject %v, %v without: it read the subject",
						c["client_id"], scopes, got, s["sub"], refused)
				}
			}
			switch {
			case len(refused) > 0 && len(grantedFor) > 0:
				t.Errorf("client %v, scopes %v: refused before sign-in (%v) but granted for %v", c["client_id"], scopes, refused, grantedFor)
			case len(refused) == 0 && len(grantedFor) == 0:
				t.Errorf("client %v, scopes %v: not refused before sign-in, but refused for every person", c["client_id"], scopes)
			case len(refused) > 0:
				refusedSeen++
			default:
				grantedSeen++
			}
		}
	}
	if refusedSeen == 0 || grantedSeen == 0 {
		t.Fatalf("the matrix tells nothing: %d refused, %d granted", refusedSeen, grantedSeen)
	}
	t.Logf("%d clients × %d requests × %d subjects: %d refused before sign-in, %d granted to someone",
		len(clients), len(requests), len(subjects), refusedSeen, grantedSeen)
}
