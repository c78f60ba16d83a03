package wasm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"

	"github.com/pbac-gateway/pbac/rego"
	"github.com/pbac-gateway/pbac/wasm"
)

// Example loads the shipped policy into an engine and decides one tool call:
// the CI bot may not post to Slack.
func Example() {
	ctx := context.Background()
	bundle, err := rego.BuildShipped(ctx)
	if err != nil {
		log.Fatal(err)
	}
	engine, err := wasm.NewEngine(ctx, wasm.NewConfig().WithMaxInstances(2))
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close(ctx)
	policy, err := engine.Load(ctx, bundle.Wasm, bundle.Data)
	if err != nil {
		log.Fatal(err)
	}
	defer policy.Close(ctx)

	decision, err := policy.Eval(ctx, "pbac/tool_call", []byte(`{
		"client": {"client_id": "ci", "agent_provider": "ci-bot", "verified": true},
		"token": {"client_id": "ci", "scp": ["slack:write"], "aud": ["gw"], "iat": 100, "exp": 400},
		"request": {"backend": "slack", "method": "tools/call", "tool": "slack.post_message"},
		"now": 200}`))
	if err != nil {
		log.Fatal(err)
	}
	var d struct {
		Allow   bool     `json:"allow"`
		Tier    string   `json:"tier"`
		Reasons []string `json:"reasons"`
	}
	if err := json.Unmarshal(decision, &d); err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.Allow, d.Tier, d.Reasons)
	// Output: false ci_agent [ci_agent tier does not grant slack:write]
}
