package asrv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/asrv/cimd"
	"github.com/pbac-gateway/pbac/contract"
)

// Clients of Client ID Metadata Documents (draft-ietf-oauth-client-id-
// metadata-document; MCP 2026-07-28, "Client Registration"): a client_id
// that is an https URL names the client's own metadata document, which
// Config.ClientMetadata resolves. fosite stays in charge of every flow: it
// meets these clients through its client storage (configuredClients) and
// its client authentication strategy (authenticateClient), and sees an
// ordinary *Client built from the document on each request. Such a client
// carries an attestation of kind "cimd" and the publishing origin, which
// policy may weigh; it is unverified (the document says who publishes it,
// not what the agent is) unless the document carries a software statement
// that Config.Statements verifies, as at registration. A statement that
// does not verify leaves the client unverified, never refused: a published
// document may carry a statement for other servers.

// AttestationCIMD is the attestation kind of a client known by its client
// id metadata document.
const AttestationCIMD = contract.AttestationCIMD

// metadataClients turns resolved documents into clients.
type metadataClients struct {
	resolver   *cimd.Resolver
	assertions *cimd.AssertionVerifier
	statements *StatementVerifier
	log        *slog.Logger
	now        func() time.Time
}

func newMetadataClients(cfg *Config, store Store) (*metadataClients, error) {
	if cfg.ClientMetadata == nil {
		return nil, nil
	}
	base := strings.TrimSuffix(cfg.Issuer, "/")
	auds := []string{base, base + PathToken}
	if cfg.Issuer != base {
		auds = append(auds, cfg.Issuer)
	}
	av, err := cimd.NewAssertionVerifier(cimd.AssertionConfig{
		Audiences: auds, Keys: cfg.ClientMetadata, Replay: assertionSpender{store}, Now: cfg.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("asrv: client metadata: %w", err)
	}
	return &metadataClients{resolver: cfg.ClientMetadata, assertions: av, statements: cfg.Statements, log: cfg.Logger, now: cfg.Now}, nil
}

// isMetadataClient tells whether c is (a stored snapshot of) a metadata
// document's client.
func isMetadataClient(c *Client) bool {
	return c != nil && c.Attestation != nil && c.Attestation.Kind == AttestationCIMD
}

// redirectHintKey carries an authorization request's redirect_uri to the
// client lookup: a document registers loopback redirect URIs without a
// port and the client listens on one of its choosing (RFC 8252 §7.3), which
// fosite matches only for IP literals; the client built for the request
// registers the requested URI when the document allows it.
type redirectHintKey struct{}

func withRedirectHint(ctx context.Context, r *http.Request) context.Context {
	if err := r.ParseForm(); err != nil || len(r.Form["redirect_uri"]) != 1 {
		return ctx
	}
	return context.WithValue(ctx, redirectHintKey{}, r.Form.Get("redirect_uri"))
}

// client resolves a metadata document's client, as this request sees it.
func (m *metadataClients) client(ctx context.Context, id string) (*Client, error) {
	d, err := m.resolver.Resolve(ctx, id)
	if err != nil {
		return nil, err
	}
	c, stmtErr := m.fromDocument(d)
	if stmtErr != nil {
		m.log.WarnContext(ctx, "metadata document's software statement does not verify; the client is unverified",
			"client_id", d.ClientID, "err", stmtErr)
	}
	if hint, _ := ctx.Value(redirectHintKey{}).(string); hint != "" && !slices.Contains(c.RedirectURIs, hint) {
		if _, ok := d.MatchRedirectURI(hint); ok {
			c.RedirectURIs = append(c.RedirectURIs, hint)
		}
	}
	return c, nil
}

// fromDocument builds the client of a document, verified when its
// software statement verifies (as a registration's would); the error is
// the statement's, when it carries one that does not.
func (m *metadataClients) fromDocument(d *cimd.Document) (*Client, error) {
	var agent AgentClaims
	var stmtErr error
	switch {
	case d.SoftwareStatement == "":
	case m.statements == nil:
		stmtErr = fmt.Errorf("%w: no software statement issuers are trusted", ErrUntrustedStatement)
	default:
		agent, stmtErr = m.statements.Verify(d.SoftwareStatement, m.now())
	}
	return &Client{
		ID:           d.ClientID,
		RedirectURIs: slices.Clone(d.RedirectURIs),
		GrantTypes:   slices.Clone(d.GrantTypes),
		// As for registered clients, a client's scope is a hint, not a
		// ceiling: policy decides what each token grants, and fosite checks
		// requests against the scopes clients may ask for now
		// (configuredClients.withScopes).
		ResponseTypes:           slices.Clone(d.ResponseTypes),
		TokenEndpointAuthMethod: d.TokenEndpointAuthMethod,
		Name:                    d.ClientName,
		URI:                     d.ClientURI,
		Agent:                   agent,
		SoftwareStatement:       d.SoftwareStatement,
		Attestation:             &contract.Attestation{Kind: AttestationCIMD, Origin: d.Origin},
		CreatedAt:               m.now().UTC(),
		metadata:                d,
	}, stmtErr
}

// metadataClient is configuredClients.GetClient for a URL-formatted id. A
// client an operator registered under that URL is used as registered (the
// draft, "Pre-Registering Client ID Metadata Document URLs"); otherwise
// the document is resolved, never the stored snapshot.
func (c configuredClients) metadataClient(ctx context.Context, id string) (*Client, error) {
	stored, err := c.Store.Client(ctx, id)
	switch {
	case err == nil && !isMetadataClient(stored):
		return stored, nil
	case err != nil && !errors.Is(err, fosite.ErrNotFound):
		return nil, err
	case c.metadata == nil:
		return nil, fmt.Errorf("client id metadata documents are not enabled: %w", fosite.ErrNotFound)
	}
	return c.metadata.client(ctx, id)
}

// anchorMetadataClient stores a snapshot of a metadata document's client
// before its first code or token: the token stores tie every token to a
// registered client (and delete them with it), so the client is registered
// under its URL, unverified, within the cap on clients. Policy has allowed
// the grant by then, and the code or token that follows at once ends the
// client's pending state, so the caps on pending clients do not refuse it:
// registrations that fill them must not keep people from signing in with
// such a client. What the AS enforces is always read from the document,
// never from the snapshot.
func (s *Server) anchorMetadataClient(ctx context.Context, c *Client) error {
	if !isMetadataClient(c) || c.metadata == nil {
		return nil
	}
	if _, err := s.store.Client(ctx, c.ID); err == nil {
		return nil
	} else if !errors.Is(err, fosite.ErrNotFound) {
		return fmt.Errorf("anchor metadata client %s: %w", c.ID, err)
	}
	snap, _ := s.clients.metadata.fromDocument(c.metadata)
	snap.metadata = nil
	if err := s.admitClient(ctx, snap, admission{granted: true}); err != nil && !errors.Is(err, ErrClientExists) {
		return fmt.Errorf("anchor metadata client %s: %w", c.ID, err)
	}
	s.log.InfoContext(ctx, "metadata document client stored", "client_id", c.ID, "origin", c.Attestation.Origin)
	return nil
}

// anchorError is the OAuth error for a failed anchorMetadataClient.
func anchorError(err error) error {
	if errors.Is(err, ErrRegistrationFull) {
		return fosite.ErrTemporarilyUnavailable.WithHint("The authorization server takes no more new clients now; try again later.").WithWrap(err)
	}
	return fosite.ErrServerError.WithWrap(err)
}

// metadataError is the OAuth error for a metadata document that could not
// be used: the client (and the user, on the error page) gets a short
// reason, the log the detail.
func metadataError(err error) (*fosite.RFC6749Error, bool) {
	var hint string
	switch {
	case errors.Is(err, cimd.ErrInvalidClientID):
		hint = "The client_id is a URL, but not a valid client metadata document URL (https, a path, no fragment, userinfo or dot segments)."
	case errors.Is(err, cimd.ErrNotPinned):
		hint = "This authorization server does not fetch client metadata documents, and none is pinned for this client_id."
	case errors.Is(err, cimd.ErrNotAllowed):
		hint = "The client's metadata document is at an address this authorization server may not fetch from."
	case errors.Is(err, cimd.ErrFetch):
		hint = "The client's metadata document could not be fetched."
	case errors.Is(err, cimd.ErrInvalidDocument):
		hint = "The client's metadata document is not valid."
	case errors.Is(err, cimd.ErrClosed):
		hint = "The authorization server is shutting down."
	default:
		return nil, false
	}
	return fosite.ErrInvalidClient.WithHint(hint).WithWrap(err).WithDebug(err.Error()), true
}

// authenticateClient is fosite's client authentication strategy: a client
// assertion (RFC 7523) for a metadata document's private_key_jwt client is
// verified with the document's keys; everything else is fosite's default.
func (s *Server) authenticateClient(ctx context.Context, r *http.Request, form url.Values) (fosite.Client, error) {
	f := s.fosite()
	if s.clients.metadata == nil || form.Get("client_assertion_type") != cimd.ClientAssertionType {
		return f.DefaultClientAuthenticationStrategy(ctx, r, form)
	}
	assertion := form.Get("client_assertion")
	id := form.Get("client_id")
	if id == "" {
		id = cimd.AssertionSubject(assertion) // RFC 7521 §4.2: client_id is optional
	}
	if !cimd.IsURL(id) {
		return f.DefaultClientAuthenticationStrategy(ctx, r, form)
	}
	if _, _, basic := r.BasicAuth(); basic {
		return nil, fosite.ErrInvalidRequest.WithHint("The client used more than one authentication method (RFC 6749 §2.3).")
	}
	c, err := s.clients.metadataClient(ctx, id)
	if err != nil {
		if e, ok := metadataError(err); ok {
			return nil, e
		}
		return nil, fosite.ErrInvalidClient.WithWrap(err).WithDebug(err.Error())
	}
	if !isMetadataClient(c) {
		return f.DefaultClientAuthenticationStrategy(ctx, r, form)
	}
	if c.TokenEndpointAuthMethod != cimd.AuthMethodPrivateKeyJWT {
		return nil, fosite.ErrInvalidClient.WithHint("The client's metadata document does not register private_key_jwt, but a client assertion was sent.")
	}
	if err := s.clients.metadata.assertions.Verify(ctx, c.metadata, assertion); err != nil {
		if e, ok := metadataError(err); ok {
			return nil, e
		}
		return nil, fosite.ErrInvalidClient.WithHint("The client assertion is not valid.").WithWrap(err).WithDebug(err.Error())
	}
	return s.clients.withScopes(c), nil
}

// assertionSpender spends client assertion jtis in the token store, where
// fosite keeps its own: once, on every replica.
type assertionSpender struct{ store Store }

// Spend implements cimd.ReplayStore.
func (a assertionSpender) Spend(ctx context.Context, key string, exp time.Time) (bool, error) {
	err := a.store.SetClientAssertionJWT(ctx, "pbac-"+key, exp)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fosite.ErrJTIKnown):
		return false, nil
	default:
		return false, err
	}
}
