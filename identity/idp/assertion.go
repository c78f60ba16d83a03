package idp

import (
	"context"
	"slices"

	"github.com/pbac-gateway/pbac/identity"
)

var _ identity.AssertionIssuer = (*Provider)(nil)

// VerifyAssertion implements identity.AssertionIssuer: Verify of an
// IDJAGVerifier for resources and spend, with the default maximum
// lifetime.
func (p *Provider) VerifyAssertion(ctx context.Context, assertion, clientID string, resources []string, spend identity.Spender) (identity.AssertionGrant, error) {
	v, err := p.IDJAGVerifier(resources, spend, 0)
	if err != nil {
		return identity.AssertionGrant{}, err
	}
	g, err := v.Verify(ctx, assertion, clientID)
	if err != nil {
		return identity.AssertionGrant{}, err
	}
	return identity.AssertionGrant{Person: g.Person, ClientID: g.ClientID, Resources: slices.Clone(g.Resources), Scopes: g.Scopes,
		JTI: g.JTI, IssuedAt: g.IssuedAt, Expiry: g.Expiry}, nil
}
