// Package tenantpolicy is the policy of the throwaway tenant `pbac
// conformance client` starts: any registered client may get the tenant's
// scopes for the signed-in user; test-tool needs conformance:write.
package tenantpolicy

import (
	"context"
	"embed"

	"github.com/pbac-gateway/pbac/rego"
)

//go:embed policy.rego data.json
var sources embed.FS

// Build compiles the tenant policy to a bundle.
func Build(ctx context.Context) (*rego.Bundle, error) {
	return rego.Build(ctx, sources)
}
