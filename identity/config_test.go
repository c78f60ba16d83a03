package identity_test

import (
	"slices"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"

	"github.com/pbac-gateway/pbac/identity"
)

// TestConfigYAMLNames: the identity section as the issue and the docs
// spell it decodes strictly into Config.
func TestConfigYAMLNames(t *testing.T) {
	const doc = `
oidc:
  issuer: https://login.example.com
  client_id: pbac
  client_secret_file: /etc/pbac/secrets/oidc-client-secret
  scopes: [openid, profile, email, groups]
  groups_claim: groups
  subject_claim: sub
users_file: /etc/pbac/users.yaml
`
	var c identity.Config
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	o := c.OIDC
	if o == nil || o.Issuer != "https://login.example.com" || o.ClientID != "pbac" || o.ClientSecretFile != "/etc/pbac/secrets/oidc-client-secret" ||
		!slices.Equal(o.Scopes, []string{"openid", "profile", "email", "groups"}) || o.GroupsClaim != "groups" || o.SubjectClaim != "sub" ||
		c.UsersFile != "/etc/pbac/users.yaml" || !c.Configured() {
		t.Fatalf("decoded %+v %+v", c, o)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	var none identity.Config
	if none.Configured() || none.Validate() != nil {
		t.Fatal("an empty identity section is valid and configures nobody")
	}
}
