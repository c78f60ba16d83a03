package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pbac-gateway/pbac/contract"
)

// RemoteIntrospector checks tokens at a remote authorization server's RFC
// 7662 endpoint, authenticating with the gateway's own client credentials.
// It is the Introspector when the AS does not run in process.
type RemoteIntrospector struct {
	Endpoint     string
	ClientID     string
	ClientSecret string
	// HTTPClient defaults to one with a 5 s timeout and no proxy.
	HTTPClient *http.Client
}

// introspection is the RFC 7662 response, with the AS's pbac_* members.
type introspection struct {
	Active   bool                  `json:"active"`
	Scope    string                `json:"scope"`
	ClientID string                `json:"client_id"`
	Sub      string                `json:"sub"`
	Aud      audience              `json:"aud"`
	Exp      int64                 `json:"exp"`
	Iat      int64                 `json:"iat"`
	Act      *contract.Actor       `json:"act"`
	Tier     string                `json:"pbac_tier"`
	Agent    contract.AgentClaims  `json:"pbac_agent"`
	Attest   *contract.Attestation `json:"pbac_attestation"`
	Roles    []string              `json:"pbac_roles"`
	Groups   []string              `json:"pbac_groups"`
}

// audience accepts RFC 7662's aud as a string or an array.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*a = many
	return nil
}

// Introspect implements Introspector. Any failure to get an answer is an
// error (the gateway denies); an inactive token is an inactive result.
func (r *RemoteIntrospector) Introspect(ctx context.Context, token, resource string) (contract.Identity, error) {
	hc := r.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	}
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	if resource != "" {
		form.Set("resource", resource)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.Endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return contract.Identity{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(r.ClientID), url.QueryEscape(r.ClientSecret))
	resp, err := hc.Do(req)
	if err != nil {
		return contract.Identity{}, fmt.Errorf("introspect at %s: %w", r.Endpoint, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return contract.Identity{}, fmt.Errorf("introspect at %s: HTTP %d", r.Endpoint, resp.StatusCode)
	}
	var in introspection
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&in); err != nil {
		return contract.Identity{}, fmt.Errorf("introspect at %s: %w", r.Endpoint, err)
	}
	if !in.Active {
		return contract.Identity{Reasons: []string{"the authorization server reports the token inactive"}}, nil
	}
	return contract.Identity{
		Active: true, Scopes: strings.Fields(in.Scope), ClientID: in.ClientID, Subject: in.Sub,
		Roles: in.Roles, Audience: in.Aud, IssuedAt: in.Iat, ExpiresAt: in.Exp, Act: in.Act, Tier: in.Tier, Attestation: in.Attest,
		Groups: in.Groups, Agent: in.Agent,
	}, nil
}
