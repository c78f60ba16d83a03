package config

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// ASrv configures the authorization server this process runs: pbac
// asrv, or pbac up's own when no authorization_server is named.
//
//	asrv:
//	  introspection_clients:           # the only clients that may call /oauth2/introspect (RFC 7662)
//	    - client_id: gateway           # a gateway running apart (its authorization_server.client_id)
//	      client_secret_file: /run/secrets/gateway   # configured here, never registered
//	    - client_id: 3bK9…             # or a confidential client registered at this AS, by id
//	  registration:                    # dynamic client registration (RFC 7591), open to anybody
//	    per_address: 30                # registrations one address may make at once…
//	    per_address_interval: 20s      # …then one every
//	    max_clients: 10000
//	    max_unverified: 1000           # unverified clients that never got a code or token…
//	    max_unverified_per_address: 50 # …of them registered from one address (default max_unverified/20)…
//	    unverified_ttl: 24h            # …are deleted after this long
//	  statements:                      # software statements (pbac statement sign)
//	    max_lifetime: 720h             # the longest exp - iat accepted
//	    revoked_ids: [V1StGXR8_Z5jdHi6B-myTw]   # jti (pbac statement inspect): refused, and their clients unverified
//	    revoked_keys: [Jx2…]           # issuer key ids (kid): likewise for every statement they signed
//	  max_sign_in_age: 24h             # a person signs in again this long after signing in, refresh or not
//	  access_token_ttl: 10m            # an access token's lifetime (policy may shorten it per agent)
//	  refresh_reuse_grace: 10s         # a rotated refresh token its client may present again this long (0: never)
type ASrv struct {
	IntrospectionClients []IntrospectionClient `yaml:"introspection_clients"`
	Registration         *Registration         `yaml:"registration"`
	Statements           *Statements           `yaml:"statements"`
	MaxSignInAge         string                `yaml:"max_sign_in_age"`
	AccessTokenTTL       string                `yaml:"access_token_ttl"`
	RefreshReuseGrace    string                `yaml:"refresh_reuse_grace"`
}

// DefaultMaxSignInAge is asrv.max_sign_in_age's default (the
// authorization server's own, asrv.DefaultMaxSignInAge).
const DefaultMaxSignInAge = 24 * time.Hour

// SignInMaxAge resolves asrv.max_sign_in_age: how long a person's sign-in
// lasts before no refresh is answered and they sign in again (s may be
// nil; unset: DefaultMaxSignInAge). Zero or negative is refused: a
// sign-in that never ends is what the setting exists to prevent.
func (s *ASrv) SignInMaxAge() (time.Duration, error) {
	if s == nil || s.MaxSignInAge == "" {
		return DefaultMaxSignInAge, nil
	}
	return positiveDuration("asrv.max_sign_in_age", s.MaxSignInAge, "24h")
}

// DefaultAccessTokenTTL is asrv.access_token_ttl's default (the
// authorization server's own).
const DefaultAccessTokenTTL = 10 * time.Minute

// AccessTokenLifetime resolves asrv.access_token_ttl: how long an access
// token lives, at most (the policy's token_ttl_seconds may shorten it for
// an agent; s may be nil; unset: DefaultAccessTokenTTL). Zero or negative
// is refused. Short lifetimes make clients refresh sooner; the real-client
// conformance drivers use a few seconds to watch each CLI refresh.
func (s *ASrv) AccessTokenLifetime() (time.Duration, error) {
	if s == nil || s.AccessTokenTTL == "" {
		return DefaultAccessTokenTTL, nil
	}
	return positiveDuration("asrv.access_token_ttl", s.AccessTokenTTL, "10m")
}

// DefaultRefreshReuseGrace is asrv.refresh_reuse_grace's default: Gemini
// CLI's concurrent refreshes at start present one refresh token 1-7 ms
// apart (RATIONALE.md, "A rotated refresh token has ten seconds of
// grace"); ten seconds covers that, and a slow machine or network, with
// a wide margin.
const DefaultRefreshReuseGrace = 10 * time.Second

// MaxRefreshReuseGrace bounds asrv.refresh_reuse_grace (the authorization
// server's asrv.MaxRefreshReuseGrace): the window is for concurrent
// refreshes, not for replays.
const MaxRefreshReuseGrace = time.Minute

// RefreshReuseGracePeriod resolves asrv.refresh_reuse_grace: how long
// after a refresh token was rotated its own client may present it again
// and get a new pair of the same grant, instead of the reuse revoking the
// whole family (s may be nil; unset: DefaultRefreshReuseGrace). Zero turns
// it off; negative or more than MaxRefreshReuseGrace is refused.
func (s *ASrv) RefreshReuseGracePeriod() (time.Duration, error) {
	if s == nil || s.RefreshReuseGrace == "" {
		return DefaultRefreshReuseGrace, nil
	}
	d, err := time.ParseDuration(s.RefreshReuseGrace)
	if err != nil || d < 0 || d > MaxRefreshReuseGrace {
		return 0, fmt.Errorf("asrv.refresh_reuse_grace %q: want a duration from 0 (none) to %s (e.g. 10s)", s.RefreshReuseGrace, MaxRefreshReuseGrace)
	}
	return d, nil
}

// Statements shape software statement verification.
type Statements struct {
	MaxLifetime string   `yaml:"max_lifetime"`
	RevokedIDs  []string `yaml:"revoked_ids"`
	RevokedKeys []string `yaml:"revoked_keys"`
}

// StatementPolicy is how the authorization server checks software
// statements, resolved.
type StatementPolicy struct {
	// MaxLifetime is the longest exp - iat accepted (0: the AS's default).
	MaxLifetime time.Duration
	// RevokedIDs and RevokedKeys are statement ids (jti) and issuer key ids
	// (kid) refused, their clients made unverified.
	RevokedIDs, RevokedKeys []string
}

// StatementPolicy resolves the statements settings (s may be nil: none).
func (s *ASrv) StatementPolicy() (StatementPolicy, error) {
	if s == nil || s.Statements == nil {
		return StatementPolicy{}, nil
	}
	st := s.Statements
	var out StatementPolicy
	if st.MaxLifetime != "" {
		d, err := positiveDuration("asrv.statements.max_lifetime", st.MaxLifetime, "720h")
		if err != nil {
			return StatementPolicy{}, err
		}
		out.MaxLifetime = d
	}
	for _, id := range slices.Concat(st.RevokedIDs, st.RevokedKeys) {
		if strings.TrimSpace(id) == "" {
			return StatementPolicy{}, errors.New("asrv.statements: an empty revoked id")
		}
	}
	out.RevokedIDs, out.RevokedKeys = st.RevokedIDs, st.RevokedKeys
	return out, nil
}

// Registration bound dynamic client registration (zero: defaults).
type Registration struct {
	PerAddress              int    `yaml:"per_address"`
	PerAddressInterval      string `yaml:"per_address_interval"`
	MaxClients              int    `yaml:"max_clients"`
	MaxUnverified           int    `yaml:"max_unverified"`
	MaxUnverifiedPerAddress int    `yaml:"max_unverified_per_address"`
	UnverifiedTTL           string `yaml:"unverified_ttl"`
}

// RegistrationLimits are the registration settings, resolved (zero
// fields: the authorization server's defaults).
type RegistrationLimits struct {
	PerAddress              int
	PerAddressInterval      time.Duration
	MaxClients              int
	MaxUnverified           int
	MaxUnverifiedPerAddress int
	UnverifiedTTL           time.Duration
}

// RegistrationLimits resolves the registration settings (s may be nil:
// defaults).
func (s *ASrv) RegistrationLimits() (RegistrationLimits, error) {
	if s == nil || s.Registration == nil {
		return RegistrationLimits{}, nil
	}
	r := s.Registration
	l := RegistrationLimits{PerAddress: r.PerAddress, MaxClients: r.MaxClients, MaxUnverified: r.MaxUnverified,
		MaxUnverifiedPerAddress: r.MaxUnverifiedPerAddress}
	for _, d := range []struct {
		key, v string
		dst    *time.Duration
	}{{"per_address_interval", r.PerAddressInterval, &l.PerAddressInterval}, {"unverified_ttl", r.UnverifiedTTL, &l.UnverifiedTTL}} {
		if d.v == "" {
			continue
		}
		v, err := positiveDuration("asrv.registration."+d.key, d.v, "24h")
		if err != nil {
			return RegistrationLimits{}, err
		}
		*d.dst = v
	}
	return l, nil
}

// IntrospectionClient is one resource server allowed to introspect.
type IntrospectionClient struct {
	ClientID         string `yaml:"client_id"`
	ClientSecretFile string `yaml:"client_secret_file"`
}

func (s *ASrv) validate() []error {
	if s == nil {
		return nil
	}
	var errs []error
	seen := map[string]bool{}
	for i, c := range s.IntrospectionClients {
		where := fmt.Sprintf("asrv.introspection_clients[%d]", i)
		switch {
		case c.ClientID == "":
			errs = append(errs, fmt.Errorf("%s: client_id is required", where))
		case seen[c.ClientID]:
			errs = append(errs, fmt.Errorf("%s: client_id %q is listed twice", where, c.ClientID))
		}
		seen[c.ClientID] = true
		if c.ClientSecretFile != "" {
			if _, err := os.Stat(c.ClientSecretFile); err != nil {
				errs = append(errs, fmt.Errorf("%s: client_secret_file: %w", where, err))
			}
		}
	}
	if _, err := s.StatementPolicy(); err != nil {
		errs = append(errs, err)
	}
	if _, err := s.SignInMaxAge(); err != nil {
		errs = append(errs, err)
	}
	if _, err := s.AccessTokenLifetime(); err != nil {
		errs = append(errs, err)
	}
	if _, err := s.RefreshReuseGracePeriod(); err != nil {
		errs = append(errs, err)
	}
	if r := s.Registration; r != nil {
		if r.PerAddress < 0 || r.MaxClients < 0 || r.MaxUnverified < 0 || r.MaxUnverifiedPerAddress < 0 {
			errs = append(errs, errors.New("asrv.registration: counts must not be negative (0 or absent: the default)"))
		}
		if _, err := s.RegistrationLimits(); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// Introspector is a resource server allowed to introspect, resolved: its
// client id and, for one configured here, its secret.
type Introspector struct {
	ClientID, Secret string
}

// Introspectors resolves the introspection clients, reading their secret
// files (s may be nil: none).
func (s *ASrv) Introspectors() ([]Introspector, error) {
	if s == nil {
		return nil, nil
	}
	var out []Introspector
	for _, c := range s.IntrospectionClients {
		in := Introspector{ClientID: c.ClientID}
		if c.ClientSecretFile != "" {
			raw, err := os.ReadFile(c.ClientSecretFile)
			if err != nil {
				return nil, fmt.Errorf("asrv.introspection_clients %s: %w", c.ClientID, err)
			}
			if in.Secret = strings.TrimSpace(string(raw)); in.Secret == "" {
				return nil, errors.New("asrv.introspection_clients " + c.ClientID + ": the secret file is empty")
			}
		}
		out = append(out, in)
	}
	return out, nil
}
