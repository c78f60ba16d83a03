package asrv

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/contract"
)

// Decision is a policy decision: allow, the reasons, and the whole result
// object for the entrypoint's own fields.
type Decision = contract.Decision

// Decider is how the AS asks policy: contract.Decider, which the plugins
// registry implements. Any error is a deny. Decide must return in bounded
// time (the registry bounds every decision).
type Decider = contract.Decider

// DeciderFunc adapts a function to Decider.
type DeciderFunc = contract.DeciderFunc

// User is a human who signs in at the authorization endpoint.
type User struct {
	Subject string
	Name    string
	// Roles are given by the source itself (the demo users); Groups are
	// the person's groups at their identity source, which policy data maps
	// to roles.
	Roles  []string
	Email  string
	Groups []string
}

// UserSource authenticates the humans agents act for with a name and a
// password. The demo source holds alice, bob and carol (the demo tenant
// only); an install without an identity provider has a users file
// (PasswordUsers); with neither, Config.Users is nil.
type UserSource interface {
	// Authenticate returns the user for the credentials, or ErrBadCredentials.
	Authenticate(ctx context.Context, username, password string) (User, error)
	// Lookup returns a user by subject (roles are re-read on every token
	// issuance), or ErrUnknownUser.
	Lookup(ctx context.Context, subject string) (User, error)
}

// User source errors.
var (
	ErrBadCredentials = errors.New("bad credentials")
	ErrUnknownUser    = errors.New("unknown user")
)

// DemoUsers is the demo tenant's user source: alice (engineering, and a
// DBA who approves schema changes), bob (analytics, and release, who
// approves deploys) and carol (contractor), each with the password "demo".
// It is for `pbac up` only.
type DemoUsers struct{}

// DemoPassword is every demo user's password.
const DemoPassword = "demo"

func demoUsers() map[string]User {
	return map[string]User{
		"alice": {Subject: "alice", Name: "Alice (engineering)", Roles: []string{"engineering", "dba"}},
		"bob":   {Subject: "bob", Name: "Bob (analytics)", Roles: []string{"analytics", "release"}},
		"carol": {Subject: "carol", Name: "Carol (contractor)", Roles: []string{"contractor"}},
	}
}

// Authenticate implements UserSource.
func (DemoUsers) Authenticate(_ context.Context, username, password string) (User, error) {
	u, ok := demoUsers()[username]
	// Compare even for unknown users so timing does not reveal who exists.
	if subtle.ConstantTimeCompare([]byte(password), []byte(DemoPassword)) != 1 || !ok {
		return User{}, ErrBadCredentials
	}
	return u, nil
}

// List returns the demo users, by subject.
func (DemoUsers) List() []User {
	m := demoUsers()
	out := make([]User, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[k])
	}
	return out
}

// Lookup implements UserSource.
func (DemoUsers) Lookup(_ context.Context, subject string) (User, error) {
	u, ok := demoUsers()[subject]
	if !ok {
		return User{}, ErrUnknownUser
	}
	return u, nil
}

// PolicyClient renders the client for policy: its verified agent claims,
// and how it is known when that is not by a registration of its own
// (Attestation).
func (c *Client) PolicyClient() *contract.Client {
	if c == nil {
		return nil
	}
	pc := c.Agent.PolicyClient(c.ID)
	pc.Attestation = c.PolicyAttestation()
	return pc
}

func subjectInput(u *User) *contract.Subject {
	if u == nil {
		return nil
	}
	return &contract.Subject{Sub: u.Subject, Roles: slices.Clone(u.Roles), Groups: slices.Clone(u.Groups)}
}

// ErrUndecided means policy could not make a decision: it failed, ran out
// of time or was too busy. The request is refused as temporarily
// unavailable (see policyError); the cause goes to the log, not the client.
// It is contract.ErrUndecided, which the gateway checks for.
var ErrUndecided = contract.ErrUndecided

// decide asks policy and decodes the entrypoint's result into out (may be
// nil). A decision policy could not make is an error wrapping ErrUndecided,
// logged with its cause; the caller refuses the request (policyError).
func (s *Server) decide(ctx context.Context, entrypoint contract.Entrypoint, in contract.Input, out any) (Decision, error) {
	if in.Now == 0 {
		in.Now = s.now().Unix()
	}
	raw, err := contract.MarshalInput(&in)
	if err != nil {
		return Decision{}, fmt.Errorf("encode %s input: %w", entrypoint, err)
	}
	d, err := s.policy.Decide(ctx, entrypoint, raw)
	if err != nil {
		s.log.ErrorContext(ctx, "policy could not decide", "entrypoint", entrypoint, "err", err)
		return Decision{}, fmt.Errorf("%w: %s: %w", ErrUndecided, entrypoint, err)
	}
	if out != nil && len(d.Result) > 0 {
		if err := json.Unmarshal(d.Result, out); err != nil {
			return Decision{Reasons: []string{"policy result is malformed"}}, nil
		}
	}
	return d, nil
}

// policyError is the OAuth error for a request decide failed on: one
// policy could not decide is temporarily_unavailable (503; RFC 6749
// §4.1.2.1), anything else a server_error. The cause stays in the logs.
func policyError(err error) *fosite.RFC6749Error {
	if errors.Is(err, ErrUndecided) {
		return fosite.ErrTemporarilyUnavailable.WithHint("The policy could not decide; try again later.").WithWrap(err)
	}
	return fosite.ErrServerError.WithWrap(err)
}

func ttlOf(seconds int64, fallback time.Duration) time.Duration {
	if seconds <= 0 {
		return fallback
	}
	return min(time.Duration(seconds)*time.Second, fallback)
}

// policyClient renders a client for policy as this server sees it now.
func (s *Server) policyClient(c *Client) *contract.Client {
	return s.clientAsSeen(c).PolicyClient()
}

// clientAsSeen is c as this server trusts it now: a client verified by a
// statement, or a key, revoked since, or by an issuer no longer trusted,
// is unverified (its single-use restriction stays).
func (s *Server) clientAsSeen(c *Client) *Client {
	if c == nil || !s.cfg.Statements.Untrusted(c.Agent) {
		return c
	}
	cp := *c
	cp.Agent = AgentClaims{SingleUseAccessTokens: c.Agent.SingleUseAccessTokens}
	return &cp
}
