package stack

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/pbac-gateway/pbac/admin"
	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/dashboard"
	"github.com/pbac-gateway/pbac/demo"
	"github.com/pbac-gateway/pbac/identity/idp"
	"github.com/pbac-gateway/pbac/plugins"
)

// AdminTokenFile holds the admin API's bearer token in the data dir.
const AdminTokenFile = "admin-token"

// newAdmin builds what the admin listener serves: the admin API, the
// dashboard and the gateway's metrics, behind the admin guard (its own
// address and names only, changes only from its own pages) and the probes.
func (s *Stack) newAdmin() (http.Handler, error) {
	if s.policy == nil {
		return nil, errors.New("the admin listener needs the stack's own policy registry, not an outside decider")
	}
	if s.gw == nil {
		return nil, errors.New("the admin listener needs a gateway")
	}
	token, err := loadOrCreateAdminToken(s.cfg.DataDir)
	if err != nil {
		return nil, err
	}
	reg := s.policy.registry
	cfg := admin.Config{Token: token, Registry: reg, Logger: s.log, BundleToken: s.cfg.Policy.BundleToken, Profiling: s.cfg.Admin.Profiling,
		Audit: s.trail, Index: s.index, Propagate: s.propagate(), Tools: s.tools}
	if gw := s.gw; gw != nil {
		cfg.DiscoverTools = func(ctx context.Context) any { return gw.DiscoverTools(ctx) }
	}
	if src := s.bundleSource; src != nil {
		cfg.PolicySource = func() any { return src.Status() }
	}
	if sy := s.sync; sy != nil {
		cfg.PolicySync = func(ctx context.Context) any { return sy.Status(ctx) }
	}
	s.adminClientFuncs(&cfg)
	if err := s.adminApprovals(&cfg); err != nil {
		return nil, err
	}
	gw := s.gw
	cfg.BackendHealth = func(r *http.Request) map[string]string { return gw.BackendHealth(r.Context()) }
	guard, err := admin.NewGuard(s.adminLn.Addr().String(), s.cfg.Admin.Hosts)
	if err != nil {
		return nil, err
	}
	dash, err := s.newDashboard(cfg, guard.Loopback())
	if err != nil {
		return nil, fmt.Errorf("build the dashboard: %w", err)
	}
	if revoke := cfg.RevokePerson; revoke != nil {
		// A person revoked through the admin API loses their dashboard
		// sessions too (the dashboard's own revocation ends them itself).
		cfg.RevokePerson = func(r *http.Request, sub string) (admin.PersonRevocation, error) {
			got, err := revoke(r, sub)
			if err == nil {
				dash.EndSessions(sub)
			}
			return got, err
		}
	}
	api, err := admin.New(cfg)
	if err != nil {
		return nil, err
	}
	return withProbes(guard.Handler(adminMux(api, dash, gw.MetricsHandler())), s.ready.check), nil
}

// newDashboard builds the dashboard for the admin listener. In the demo
// tenant it can also register agents and run the narrative scenarios as
// the seeded agents, over real HTTP through the gateway; its users operate
// the demo only when the admin listener is loopback. Elsewhere the people
// of the AS's users file sign in, and operate when policy data names one
// of their groups (identity.operator_groups); the admin token always does.
func (s *Stack) newDashboard(adminCfg admin.Config, loopback bool) (*dashboard.Handler, error) {
	demoTenant := s.cfg.Demo.Backends && s.as != nil && s.as.served
	cfg := dashboard.Config{
		GatewayURL: s.base, Issuer: s.issuer, Registry: s.policy.registry, Audit: adminCfg.Audit, Index: adminCfg.Index,
		AdminToken: adminCfg.Token, Latency: s.gw.Latency, Logger: s.log.With("component", "dashboard"),
		Propagate: adminCfg.Propagate, DemoOperators: demoTenant && loopback, RevokePerson: adminCfg.RevokePerson,
		ListClients: adminCfg.ListClients, ReviewClient: adminCfg.ReviewClient, Tools: adminCfg.Tools,
		Approvals: adminCfg.Approvals,
	}
	for _, b := range s.backends {
		cfg.Backends = append(cfg.Backends, b.Name)
	}
	as := s.as
	if as != nil && as.served {
		// One sign-in guard for both pages: failures count together. The
		// people who sign in are the AS's: a users file's, the demo
		// users in the demo tenant only, nobody else (then only the admin
		// token signs in).
		cfg.Users, cfg.Clients, cfg.SignIn = as.people.users, s.store, as.signIn
		if as.people.sso != nil {
			// The same provider, with the admin listener's redirect URI.
			sso, err := idp.New(*s.cfg.AuthServer.Identity.OIDC, idp.Options{ASIssuer: s.adminBase, Logger: s.log.With("component", "dashboard-idp")})
			if err != nil {
				return nil, err
			}
			cfg.SSO = sso
		}
	}
	if demoTenant {
		seeded := make([]dashboard.SeededAgent, 0, len(s.agents))
		for _, a := range s.agents {
			seeded = append(seeded, dashboard.SeededAgent{Name: a.Name, ClientID: a.ClientID, ClientSecret: a.ClientSecret})
		}
		cfg.Demo = &dashboard.Demo{
			Users:    asrv.DemoUsers{}.List(),
			Password: asrv.DemoPassword,
			Agents:   func() []dashboard.SeededAgent { return seeded },
			Sign: func(c asrv.StatementClaims) (string, error) {
				return as.server.Statement(as.issuer, c)
			},
			Register: func(ctx context.Context, req *asrv.RegistrationRequest) (*asrv.Client, string, error) {
				c, secret, _, err := as.server.Register(ctx, req)
				return c, secret, err
			},
			Runner: &demo.Runner{Client: &demo.AgentClient{BaseURL: s.base}, Policy: registryEditor{s.policy.registry},
				Approver: s.demoApprover()},
		}
	}
	return dashboard.New(cfg)
}

// registryEditor lets the demo's scenarios change policy data.
type registryEditor struct{ reg *plugins.Registry }

func (e registryEditor) PolicyData() ([]byte, string, error) {
	b, ok := e.reg.ActiveBundle()
	if !ok {
		return nil, "", plugins.ErrNoPolicy
	}
	info, _ := e.reg.Active()
	return b.Data, info.Version, nil
}

func (e registryEditor) SetPolicyData(ctx context.Context, data []byte, source string) (string, error) {
	info, err := e.reg.SetData(plugins.WithAuthor(ctx, "demo scenario"), data, source)
	return info.Version, err
}

func loadOrCreateAdminToken(dataDir string) (string, error) {
	path := filepath.Join(dataDir, AdminTokenFile)
	if raw, err := os.ReadFile(path); err == nil {
		if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o077 != 0 {
			return "", fmt.Errorf("%s is readable by others; chmod 600 it", path)
		}
		return strings.TrimSpace(string(raw)), nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("create the admin token: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(tok + "\n"); err != nil {
		return "", err
	}
	return tok, f.Sync()
}
