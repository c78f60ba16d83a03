package main

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/pbac-gateway/pbac/admin"
	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/dashboard"
	"github.com/pbac-gateway/pbac/demo"
	"github.com/pbac-gateway/pbac/gateway"
	"github.com/pbac-gateway/pbac/plugins"
)

// newDashboard builds the dashboard for the admin listener. In the demo
// tenant it can also register agents and run the narrative scenarios as
// the seeded agents, over real HTTP through the gateway; its users operate
// the demo only when the admin listener is loopback.
func newDashboard(base, issuer string, backends []gateway.Backend, adminCfg admin.Config, gw *gateway.Gateway,
	as *authRuntime, agents []demoAgent, pol *policyRuntime, demoTenant, loopback bool, log *slog.Logger) (*dashboard.Handler, error) {
	cfg := dashboard.Config{
		GatewayURL: base, Issuer: issuer, Registry: pol.registry, Audit: adminCfg.Audit, Index: adminCfg.Index,
		AdminToken: adminCfg.Token, Latency: gw.Latency, Logger: log.With("component", "dashboard"),
		Propagate: adminCfg.Propagate, DemoOperators: demoTenant && loopback,
	}
	for _, b := range backends {
		cfg.Backends = append(cfg.Backends, b.Name)
	}
	if as != nil {
		// One sign-in guard for both pages: failures count together.
		cfg.Users, cfg.Clients, cfg.SignIn = asrv.DemoUsers{}, as.store, as.signIn
	}
	if demoTenant {
		seeded := make([]dashboard.SeededAgent, 0, len(agents))
		for _, a := range agents {
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
			Runner: &demo.Runner{Client: &demo.AgentClient{BaseURL: base}, Policy: registryEditor{pol.registry}},
		}
	}
	return dashboard.New(cfg)
}

// adminMux serves the admin API, the dashboard and the gateway's metrics
// on the admin listener.
func adminMux(adminAPI, dash, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/admin/", adminAPI)
	mux.Handle("GET /metrics", metrics)
	mux.Handle("/bundles/", adminAPI) // OPA bundle service API: the active bundle, for other replicas
	mux.Handle("/ui", dash)
	mux.Handle("/ui/", dash)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/", http.StatusFound)
	})
	return mux
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
	info, err := e.reg.SetData(ctx, data, source)
	return info.Version, err
}
