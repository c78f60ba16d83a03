package identity_test

import (
	"fmt"

	"github.com/pbac-gateway/pbac/identity"
)

// The identity section of the configuration file, checked, and the redirect
// URI to register at the provider.
func ExampleConfig_Validate() {
	cfg := identity.Config{OIDC: &identity.OIDCConfig{
		Issuer: "https://login.example.com", ClientID: "pbac",
		ClientSecretFile: "/etc/pbac/secrets/oidc-client-secret", Scopes: []string{"openid", "profile", "email", "groups"},
	}}
	fmt.Println(cfg.Validate())
	fmt.Println(identity.CallbackURL("https://pbac.example.com"))
	cfg.OIDC.Issuer = "http://login.example.com"
	fmt.Println(cfg.Validate())
	// Output:
	// <nil>
	// https://pbac.example.com/oauth2/idp/callback
	// identity.oidc: issuer: "http://login.example.com" must be an https URL (or http on a loopback host)
}
