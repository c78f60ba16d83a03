package host

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/pbac-gateway/pbac/asrv"
)

// ASSettings configures the authorization server this process runs: pbac
// asrv, or pbac up's own when no authorization_server is named.
//
//	asrv:
//	  introspection_clients:           # the only clients that may call /oauth2/introspect (RFC 7662)
//	    - client_id: gateway           # a gateway running apart (its authorization_server.client_id)
//	      client_secret_file: /run/secrets/gateway   # configured here, never registered
//	    - client_id: 3bK9…             # or a confidential client registered at this AS, by id
type ASSettings struct {
	IntrospectionClients []IntrospectionClient `yaml:"introspection_clients"`
}

// IntrospectionClient is one resource server allowed to introspect.
type IntrospectionClient struct {
	ClientID         string `yaml:"client_id"`
	ClientSecretFile string `yaml:"client_secret_file"`
}

func (s *ASSettings) validate() []error {
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
	return errs
}

// Introspectors resolves the introspection clients, reading their secret
// files (s may be nil: none).
func (s *ASSettings) Introspectors() ([]asrv.Introspector, error) {
	if s == nil {
		return nil, nil
	}
	var out []asrv.Introspector
	for _, c := range s.IntrospectionClients {
		in := asrv.Introspector{ClientID: c.ClientID}
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
