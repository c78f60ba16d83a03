package stack

import (
	"fmt"
	"log/slog"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/identity"
	"github.com/pbac-gateway/pbac/identity/idp"
	"github.com/pbac-gateway/pbac/identity/usersfile"
)

// people are where the authorization server's people sign in: a password
// source and single sign-on, either or both nil.
type people struct {
	users asrv.UserSource
	sso   *idp.Provider
	// demo: users are the demo tenant's demo users.
	demo bool
	// usersFile is the users file users come from ("" for another source).
	usersFile string
}

// Mode says where people sign in, for the start-up log and pbac config
// check ("" for nobody).
func (p people) mode() string {
	var s string
	switch {
	case p.demo:
		s = "the demo users (alice, bob, carol)"
	case p.usersFile != "":
		s = "the users file " + p.usersFile
	case p.users != nil:
		s = "a password source"
	}
	if p.sso != nil {
		if s != "" {
			s += " and "
		}
		s += "single sign-on at " + p.sso.Issuer()
	}
	return s
}

// openPeople opens the identity sources of the authorization server with
// this issuer: the configured users file and OpenID provider, and the demo
// users in the demo tenant alone — never elsewhere, so a deployment
// without an identity source signs nobody in (asrv refuses the code flow
// with access_denied naming the missing configuration) and only machine
// clients get tokens. A users file given to the stack directly
// (AuthServer.Users) wins over both. Nothing is fetched from the provider
// here: discovery happens at the first sign-in, so the AS starts (and its
// tokens keep working) while the provider is down.
func openPeople(cfg AuthServer, issuer string, demoTenant bool, log *slog.Logger) (people, error) {
	var p people
	id := cfg.Identity
	if err := id.Validate(); err != nil {
		return people{}, err
	}
	switch {
	case cfg.Users != nil:
		p.users = cfg.Users
	case id.UsersFile != "":
		f, err := usersfile.Open(id.UsersFile, usersfile.Options{Logger: log.With("component", "users-file")})
		if err != nil {
			return people{}, fmt.Errorf("identity.users_file: %w", err)
		}
		p.users, p.usersFile = asrv.PasswordUsers(f), id.UsersFile
	case demoTenant && id.OIDC == nil:
		// The demo users only where nobody else signs in: beside an
		// organisation's provider they would be a second, well-known way
		// in.
		p.users, p.demo = asrv.DemoUsers{}, true
	}
	if id.OIDC != nil {
		pr, err := idp.New(*id.OIDC, idp.Options{ASIssuer: issuer, Logger: log.With("component", "idp")})
		if err != nil {
			return people{}, err
		}
		p.sso = pr
	}
	return p, nil
}

// redirectSource is p's single sign-on as the authorization server takes
// it (a nil interface when there is none).
func (p people) redirectSource() identity.RedirectSource {
	if p.sso == nil {
		return nil
	}
	return p.sso
}

// assertionIssuer is the provider whose identity assertion grants (ID-JAG,
// enterprise-managed authorization) the token endpoint accepts: the
// single sign-on provider, identity.oidc (a nil interface without one).
func (p people) assertionIssuer() identity.AssertionIssuer {
	if p.sso == nil {
		return nil
	}
	return p.sso
}
