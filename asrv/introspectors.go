package asrv

import (
	"context"
	"fmt"
	"slices"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/asrv/cimd"
)

// Introspector is a resource server allowed to call the introspection
// endpoint (RFC 7662 §2.1: the endpoint requires authorization; here, a
// list). Any other client is refused before the token is read, so it
// learns nothing of another agent's token and never spends a single-use
// one.
type Introspector struct {
	// ClientID is the id it authenticates with (HTTP Basic or the form).
	ClientID string
	// Secret, when set, makes this a client configured here and never
	// registered: it authenticates with ClientID and Secret and can do
	// nothing but introspect. Without it, ClientID names a confidential
	// client registered at this AS.
	Secret string
}

// minIntrospectorSecret is the shortest secret a configured introspector
// may have: it is compared as a SHA-256 hash, so it must be unguessable.
const minIntrospectorSecret = 16

func newIntrospectors(list []Introspector) (map[string]*Client, error) {
	out := make(map[string]*Client, len(list))
	for i, in := range list {
		switch {
		case !validStoreID(in.ClientID):
			return nil, fmt.Errorf("asrv: introspector %d: a client id (at most %d bytes) is required", i, MaxStoreIDLen)
		case out[in.ClientID] != nil:
			return nil, fmt.Errorf("asrv: introspector %q is listed twice", in.ClientID)
		case in.Secret != "" && len(in.Secret) < minIntrospectorSecret:
			return nil, fmt.Errorf("asrv: introspector %q: the secret must be at least %d characters", in.ClientID, minIntrospectorSecret)
		}
		c := &Client{ID: in.ClientID, TokenEndpointAuthMethod: AuthMethodSecretBasic,
			GrantTypes: []string{}, ResponseTypes: []string{}, RedirectURIs: []string{}, Scopes: []string{}}
		if in.Secret != "" {
			c.SecretHash = hashSecret([]byte(in.Secret))
		} // else registered: authenticated against the store
		out[in.ClientID] = c
	}
	return out, nil
}

// mayIntrospect tells whether an authenticated client may call the
// introspection endpoint.
func (s *Server) mayIntrospect(clientID string) bool {
	_, ok := s.introspectors[clientID]
	return ok
}

// configuredClients is the client registry fosite authenticates against:
// the store's clients, and the introspectors configured with a secret,
// which are never stored (so they can neither be deleted by RFC 7592 nor
// hold tokens).
type configuredClients struct {
	Store
	introspectors map[string]*Client
	// metadata resolves URL-formatted client ids (nil: not enabled).
	metadata *metadataClients
	// scopes are the scopes clients may ask for now (Server.scopes): a
	// client's registered scope is a hint, not a ceiling, so the ceiling
	// fosite checks requests against is this list, as of the active
	// policy; nil keeps what the client registered.
	scopes func() []string
}

// GetClient implements fosite.ClientManager.
func (c configuredClients) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	if in, ok := c.introspectors[id]; ok && in.SecretHash != nil {
		cp := *in
		return &cp, nil
	}
	var cl *Client
	var err error
	if cimd.IsURL(id) {
		cl, err = c.metadataClient(ctx, id)
	} else {
		cl, err = c.Store.Client(ctx, id)
	}
	if err != nil {
		return nil, err
	}
	return c.withScopes(cl), nil
}

// withScopes is a copy of cl whose scopes are those clients may ask for
// now.
func (c configuredClients) withScopes(cl *Client) *Client {
	if c.scopes == nil {
		return cl
	}
	sc := c.scopes()
	if sc == nil {
		return cl
	}
	cp := *cl
	cp.Scopes = slices.Clone(sc)
	return &cp
}
