package stack

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/demo"
)

// DemoAgent is one pre-registered agent of the demo tenant.
type DemoAgent struct {
	Name         string `json:"name"`
	Provider     string `json:"provider"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret,omitempty"`
}

// DemoAgentsFile keeps the demo agents' credentials across restarts (mode
// 0600, in the data dir, demo only).
const DemoAgentsFile = "demo-agents.json"

// ReadDemoAgents reads the demo agents pbac up registered in dataDir.
func ReadDemoAgents(dataDir string) ([]DemoAgent, error) {
	raw, err := os.ReadFile(filepath.Join(dataDir, DemoAgentsFile))
	if err != nil {
		return nil, err
	}
	var agents []DemoAgent
	if err := json.Unmarshal(raw, &agents); err != nil {
		return nil, fmt.Errorf("%s: %w", DemoAgentsFile, err)
	}
	return agents, nil
}

// seedDemoAgents registers the four agents of the seed matrix with signed
// statements, once: later runs reuse them while they are still registered.
func seedDemoAgents(ctx context.Context, dataDir string, as *authRuntime, store asrv.Store) ([]DemoAgent, error) {
	path := filepath.Join(dataDir, DemoAgentsFile)
	saved, _ := ReadDemoAgents(dataDir) // none saved, or unreadable: registered afresh
	specs := []struct {
		name, provider string
		machine        bool
		singleUse      bool
	}{
		{"claude-code", "claude-code", false, false},
		{"ci-bot", "ci-bot", true, false},
		{"security-scanner", "security-scanner", true, true},
		{"autonomous-planner", "claude-code-trusted", false, false},
	}
	var agents []DemoAgent
	changed := false
	for _, sp := range specs {
		if a, ok := FindDemoAgent(saved, sp.name); ok {
			// Reused while registered — and, for one acting for a user,
			// while it has today's redirect URIs (older data dirs lack
			// Claude Code's localhost callback).
			if c, err := store.Client(ctx, a.ClientID); err == nil && (sp.machine || hasAll(c.RedirectURIs, demo.HumanRedirectURIs())) {
				agents = append(agents, a)
				continue
			}
		}
		jws, err := as.server.Statement(as.issuer, asrv.StatementClaims{SoftwareID: "pbac-demo-" + sp.name, AgentProvider: sp.provider,
			AgentModel: "demo", SingleUseAccessTokens: sp.singleUse})
		if err != nil {
			return nil, err
		}
		req := &asrv.RegistrationRequest{ClientName: sp.name, SoftwareStatement: jws}
		if sp.machine {
			req.GrantTypes = []string{"client_credentials"}
			req.TokenEndpointAuthMethod = asrv.AuthMethodSecretBasic
		} else {
			req.GrantTypes = []string{"authorization_code", "refresh_token", asrv.GrantTypeExchange}
			req.RedirectURIs = demo.HumanRedirectURIs()
			req.TokenEndpointAuthMethod = asrv.AuthMethodNone
		}
		if err := req.Validate(); err != nil {
			return nil, err
		}
		c, secret, _, err := as.server.Register(ctx, req)
		if err != nil {
			return nil, err
		}
		agents = append(agents, DemoAgent{Name: sp.name, Provider: sp.provider, ClientID: c.ID, ClientSecret: secret})
		changed = true
	}
	if changed {
		raw, _ := json.MarshalIndent(agents, "", "  ")
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			return nil, err
		}
	}
	return agents, nil
}

// hasAll tells whether have holds every one of want.
func hasAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// FindDemoAgent finds the agent named name (case-insensitively).
func FindDemoAgent(list []DemoAgent, name string) (DemoAgent, bool) {
	for _, a := range list {
		if strings.EqualFold(a.Name, name) {
			return a, true
		}
	}
	return DemoAgent{}, false
}
