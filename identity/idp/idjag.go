package idp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/pbac-gateway/pbac/identity"
)

// Identity Assertion JWT Authorization Grant (ID-JAG;
// draft-ietf-oauth-identity-assertion-authz-grant, the grant of MCP's
// enterprise-managed authorization, SEP-990): an agent trades the person's
// sign-in at the organisation's provider for a short-lived JWT the
// provider signs for this authorization server, and presents it at the
// token endpoint as an RFC 7523 JWT-bearer grant.
const (
	// GrantTypeJWTBearer is RFC 7523's grant type.
	GrantTypeJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	// TypeIDJAG is the JOSE typ of an ID-JAG.
	TypeIDJAG = "oauth-id-jag+jwt"
	// DefaultIDJAGMaxLifetime bounds exp - iat of an accepted ID-JAG, and
	// with it how long its jti must be remembered.
	DefaultIDJAGMaxLifetime = 10 * time.Minute
)

// ErrInvalidAssertion is an ID-JAG that fails a check; the token endpoint
// answers invalid_grant. (A replay wraps identity.ErrReplayed, a provider
// whose keys cannot be fetched identity.ErrUnavailable.)
// It is identity.ErrInvalidAssertion.
var ErrInvalidAssertion = identity.ErrInvalidAssertion

// IDJAG is a verified identity assertion grant.
type IDJAG struct {
	// Person is who the agent acts for, mapped as at sign-in (the
	// subject and groups claims of the configuration).
	Person identity.Person
	// ClientID is the client the provider issued the grant to (the
	// authenticated client that presented it).
	ClientID string
	// Resources are the RFC 8707 resources the grant is for.
	Resources []string
	// Scopes the provider allowed (scope claim), if it said.
	Scopes             []string
	JTI                string
	IssuedAt, Expiry   time.Time
	Issuer, SigningKey string
}

// IDJAGVerifier checks ID-JAGs for one authorization server.
type IDJAGVerifier struct {
	p           *Provider
	resources   []string
	spend       identity.Spender
	maxLifetime time.Duration
}

// IDJAGVerifier returns a verifier of the provider's ID-JAGs for this
// authorization server (Options.ASIssuer is their audience) serving
// resources, which remembers each grant's jti in spend until it expires.
// maxLifetime <= 0 takes DefaultIDJAGMaxLifetime.
func (p *Provider) IDJAGVerifier(resources []string, spend identity.Spender, maxLifetime time.Duration) (*IDJAGVerifier, error) {
	if len(resources) == 0 || spend == nil {
		return nil, errors.New("idp: an ID-JAG verifier needs the resources served and a spender for jti")
	}
	if maxLifetime <= 0 {
		maxLifetime = DefaultIDJAGMaxLifetime
	}
	return &IDJAGVerifier{p: p, resources: slices.Clone(resources), spend: spend, maxLifetime: maxLifetime}, nil
}

// idjagClaims are the claims an ID-JAG must carry.
type idjagClaims struct {
	Issuer   string       `json:"iss"`
	Subject  string       `json:"sub"`
	Audience stringOrList `json:"aud"`
	ClientID string       `json:"client_id"`
	JTI      string       `json:"jti"`
	Exp      *json.Number `json:"exp"`
	Iat      *json.Number `json:"iat"`
	Nbf      *json.Number `json:"nbf"`
	Resource stringOrList `json:"resource"`
	Scope    *string      `json:"scope"`
}

// Verify checks an ID-JAG presented by the authenticated client clientID:
// typ oauth-id-jag+jwt; one signature by a key of the provider's key set
// with an accepted algorithm; iss the configured provider; aud exactly this
// authorization server; client_id the presenting client; resource present
// and served here; exp in the future, iat present and not in the future,
// exp - iat within the maximum lifetime, nbf (if any) passed; a jti never
// seen before (spent last, so refused grants use no memory).
func (v *IDJAGVerifier) Verify(ctx context.Context, assertion, clientID string) (IDJAG, error) {
	if len(assertion) > maxTokenBytes {
		return IDJAG{}, fmt.Errorf("%w: larger than %d bytes", ErrInvalidAssertion, maxTokenBytes)
	}
	jws, err := jose.ParseSignedCompact(assertion, joseAlgs)
	if err != nil {
		return IDJAG{}, fmt.Errorf("%w: %w", ErrInvalidAssertion, err)
	}
	if len(jws.Signatures) != 1 {
		return IDJAG{}, fmt.Errorf("%w: %d signatures, want one", ErrInvalidAssertion, len(jws.Signatures))
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !isIDJAGType(typ) {
		return IDJAG{}, fmt.Errorf("%w: typ %q, want %s", ErrInvalidAssertion, typ, TypeIDJAG)
	}
	payload, err := keySet{v.p}.verify(ctx, jws)
	if err != nil {
		if errors.Is(err, identity.ErrUnavailable) {
			return IDJAG{}, err
		}
		return IDJAG{}, fmt.Errorf("%w: %w", ErrInvalidAssertion, err)
	}
	var c idjagClaims
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.UseNumber()
	if err := dec.Decode(&c); err != nil {
		return IDJAG{}, fmt.Errorf("%w: claims: %w", ErrInvalidAssertion, err)
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(payload, &all); err != nil {
		return IDJAG{}, fmt.Errorf("%w: claims: %w", ErrInvalidAssertion, err)
	}
	now := v.p.now()
	exp, expOK := unixClaim(c.Exp)
	iat, iatOK := unixClaim(c.Iat)
	nbf, nbfOK := unixClaim(c.Nbf)
	switch {
	case c.Issuer != v.p.cfg.Issuer:
		return IDJAG{}, fmt.Errorf("%w: issuer %q is not the configured provider %q", ErrInvalidAssertion, c.Issuer, v.p.cfg.Issuer)
	case len(c.Audience) != 1 || strings.TrimSuffix(c.Audience[0], "/") != v.p.asIssuer:
		return IDJAG{}, fmt.Errorf("%w: audience %q is not this authorization server %q", ErrInvalidAssertion, []string(c.Audience), v.p.asIssuer)
	case c.ClientID == "" || c.ClientID != clientID:
		return IDJAG{}, fmt.Errorf("%w: issued to client %q, presented by %q", ErrInvalidAssertion, c.ClientID, clientID)
	case !expOK:
		return IDJAG{}, fmt.Errorf("%w: exp is missing", ErrInvalidAssertion)
	case !now.Before(exp):
		return IDJAG{}, fmt.Errorf("%w: expired at %s", ErrInvalidAssertion, exp.UTC().Format(time.RFC3339))
	case !iatOK || iat.After(now.Add(clockSkew)):
		return IDJAG{}, fmt.Errorf("%w: iat is missing or in the future", ErrInvalidAssertion)
	case exp.Sub(iat) > v.maxLifetime:
		return IDJAG{}, fmt.Errorf("%w: lives %s, more than the %s allowed", ErrInvalidAssertion, exp.Sub(iat), v.maxLifetime)
	case nbfOK && nbf.After(now.Add(clockSkew)):
		return IDJAG{}, fmt.Errorf("%w: not valid before %s", ErrInvalidAssertion, nbf.UTC().Format(time.RFC3339))
	case c.Nbf != nil && !nbfOK:
		return IDJAG{}, fmt.Errorf("%w: nbf is not a time", ErrInvalidAssertion)
	case c.JTI == "" || len(c.JTI) > maxClaimBytes:
		return IDJAG{}, fmt.Errorf("%w: jti is missing or longer than %d bytes", ErrInvalidAssertion, maxClaimBytes)
	case len(c.Resource) == 0:
		return IDJAG{}, fmt.Errorf("%w: resource is missing", ErrInvalidAssertion)
	}
	for _, r := range c.Resource {
		if !slices.Contains(v.resources, r) {
			return IDJAG{}, fmt.Errorf("%w: resource %q is not served by this authorization server", ErrInvalidAssertion, r)
		}
	}
	person, err := v.p.person(all)
	if err != nil {
		return IDJAG{}, fmt.Errorf("%w: %w", ErrInvalidAssertion, err)
	}
	var scopes []string
	if c.Scope != nil {
		scopes = strings.Fields(*c.Scope)
	}
	fresh, err := v.spend.Spend(ctx, "id-jag:"+c.Issuer+"#"+c.JTI, exp)
	if err != nil {
		return IDJAG{}, fmt.Errorf("record the ID-JAG's jti: %w", err)
	}
	if !fresh {
		return IDJAG{}, fmt.Errorf("%w: %w: jti %q", ErrInvalidAssertion, identity.ErrReplayed, c.JTI)
	}
	return IDJAG{
		Person: person, ClientID: c.ClientID, Resources: slices.Clone([]string(c.Resource)), Scopes: scopes,
		JTI: c.JTI, IssuedAt: iat, Expiry: exp, Issuer: c.Issuer, SigningKey: jws.Signatures[0].Header.KeyID,
	}, nil
}

// isIDJAGType: RFC 7515 §4.1.9 compares media types without case and lets
// "application/" be left out.
func isIDJAGType(typ string) bool {
	typ = strings.ToLower(typ)
	return typ == TypeIDJAG || typ == "application/"+TypeIDJAG
}

// unixClaim reads a NumericDate claim.
func unixClaim(n *json.Number) (time.Time, bool) {
	if n == nil {
		return time.Time{}, false
	}
	f, err := n.Float64()
	if err != nil || f < 0 || f > 1e11 {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}

// stringOrList is a claim that is one string or a list of strings.
type stringOrList []string

func (s *stringOrList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = []string{one}
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return errors.New("not a string or a list of strings")
	}
	*s = list
	return nil
}
