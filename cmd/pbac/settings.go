package main

import (
	"github.com/pbac-gateway/pbac/admin"
	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/config"
	"github.com/pbac-gateway/pbac/gateway"
)

// The configuration resolves to plain values (package config); these build
// the parts' own types from them.

// asIntrospectors are the configuration's introspection clients, as the
// authorization server takes them (s may be nil: none).
func asIntrospectors(s *config.ASrv) ([]asrv.Introspector, error) {
	in, err := s.Introspectors()
	if err != nil {
		return nil, err
	}
	var out []asrv.Introspector
	for _, c := range in {
		out = append(out, asrv.Introspector{ClientID: c.ClientID, Secret: c.Secret})
	}
	return out, nil
}

// asRegistrationLimits are the configuration's registration limits (s may
// be nil: the defaults).
func asRegistrationLimits(s *config.ASrv) (asrv.RegistrationLimits, error) {
	l, err := s.RegistrationLimits()
	if err != nil {
		return asrv.RegistrationLimits{}, err
	}
	return asrv.RegistrationLimits{PerAddressBurst: l.PerAddress, PerAddressInterval: l.PerAddressInterval,
		MaxClients: l.MaxClients, MaxPending: l.MaxUnverified, PendingTTL: l.UnverifiedTTL}, nil
}

// asStatementVerifier returns v with the configuration's statement
// lifetime and revocations (s may be nil: v as it is).
func asStatementVerifier(s *config.ASrv, v *asrv.StatementVerifier) (*asrv.StatementVerifier, error) {
	p, err := s.StatementPolicy()
	if err != nil {
		return nil, err
	}
	if s == nil || s.Statements == nil {
		return v, nil
	}
	if p.MaxLifetime > 0 {
		v = v.WithMaxLifetime(p.MaxLifetime)
	}
	return v.WithRevoked(asrv.StatementRevocations{StatementIDs: p.RevokedIDs, KeyIDs: p.RevokedKeys}), nil
}

// gatewayArgumentLimits are the configuration's argument limits (zero
// fields: the gateway's defaults).
func gatewayArgumentLimits(a *config.ArgumentLimits) gateway.ArgumentLimits {
	if a == nil {
		return gateway.ArgumentLimits{}
	}
	return gateway.ArgumentLimits{MaxBytes: a.MaxBytes, MaxStringBytes: a.MaxStringBytes, MaxPathBytes: a.MaxPathBytes,
		MaxPathSegments: a.MaxPathSegments, MaxDepth: a.MaxDepth, MaxKeys: a.MaxKeys}
}

// remoteIntrospector is the RFC 7662 client of a remote authorization
// server.
func remoteIntrospector(r *config.RemoteAS) (*gateway.RemoteIntrospector, error) {
	in, err := r.Introspection()
	if err != nil {
		return nil, err
	}
	return &gateway.RemoteIntrospector{Endpoint: in.Endpoint, ClientID: in.ClientID, ClientSecret: in.ClientSecret}, nil
}

// gatewayBackend is a URL backend of the configuration, resolved.
func gatewayBackend(b config.Backend) (gateway.Backend, error) {
	r, err := b.Resolve()
	if err != nil {
		return gateway.Backend{}, err
	}
	return gateway.Backend{Name: r.Name, URL: r.URL, Headers: r.Headers, Timeout: r.Timeout}, nil
}

// adminClients shows the AS's clients as the admin API lists them: their
// identity and verified claims, never a secret or a token hash.
func adminClients(list []*asrv.Client, err error) ([]admin.Client, error) {
	if err != nil {
		return nil, err
	}
	out := make([]admin.Client, 0, len(list))
	for _, c := range list {
		out = append(out, admin.Client{ID: c.ID, Name: c.Name, Agent: c.Agent, GrantTypes: c.GrantTypes,
			TokenEndpointAuthMethod: c.TokenEndpointAuthMethod, CreatedAt: c.CreatedAt})
	}
	return out, nil
}
