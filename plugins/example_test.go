package plugins_test

import (
	"context"
	"fmt"
	"log"

	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/rego"
	"github.com/pbac-gateway/pbac/wasm"
)

// Example activates the shipped policy, decides, and shows that a rejected
// candidate leaves the active version in place.
func Example() {
	ctx := context.Background()
	engine, err := wasm.NewEngine(ctx, wasm.NewConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close(ctx)
	registry := plugins.New(engine)
	defer registry.Close(ctx)

	bundle, err := rego.BuildShipped(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := registry.Activate(ctx, bundle, "shipped"); err != nil {
		log.Fatal(err)
	}

	// A tool that is not in the catalogue is denied, even for the most
	// trusted tier.
	d, err := registry.Decide(ctx, "pbac/tool_call", []byte(`{
		"client": {"client_id": "planner", "agent_provider": "claude-code-trusted", "verified": true},
		"token": {"client_id": "planner", "scp": ["drive:read"], "aud": ["gw"], "iat": 100, "exp": 400},
		"request": {"backend": "drive", "method": "tools/call", "tool": "drive.delete_everything"},
		"now": 200}`))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.Allow, d.Reasons)

	broken := &rego.Bundle{Wasm: []byte("not wasm"), Data: []byte(`{}`)}
	_, err = registry.Activate(ctx, broken, "upload")
	active, _ := registry.Active()
	fmt.Println(err != nil, active.Source)
	// Output:
	// false [tool drive.delete_everything is not in the catalogue]
	// true shipped
}
