package gateway

import (
	"slices"
	"testing"
)

// TestResourceMetadataScopesNeverOfflineAccess: SEP-2207. The protected
// resource metadata's scopes_supported never holds offline_access, fixed
// or following the active policy; every other scope is kept, in order.
func TestResourceMetadataScopesNeverOfflineAccess(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fixed  []string
		active []string
		want   []string
	}{
		{"fixed", []string{"jira:read", "offline_access", "jira:write"}, nil, []string{"jira:read", "jira:write"}},
		{"active policy", nil, []string{"offline_access", "drive:read"}, []string{"drive:read"}},
		{"only offline_access", []string{"offline_access"}, nil, []string{}},
		{"none", nil, nil, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &Gateway{cfg: Config{Scopes: tc.fixed}}
			if tc.active != nil {
				g.cfg.ActiveScopes = func() []string { return tc.active }
			}
			if got := g.scopes(); !slices.Equal(got, tc.want) || got == nil {
				t.Fatalf("scopes() = %#v, want %#v", got, tc.want)
			}
		})
	}
}
