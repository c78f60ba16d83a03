package opahttp_test

import (
	"encoding/json"
	"testing"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/plugins/opahttp"
	"github.com/pbac-gateway/pbac/rego"
)

// TestShippedPolicyThroughOPAServer runs the real `opa run --server` on the
// shipped policy and checks every shipped decision vector through the
// Decider: the sidecar decides exactly what the embedded Wasm policy does.
func TestShippedPolicyThroughOPAServer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the OPA command line")
	}
	ctx := t.Context()
	bin, err := opahttp.Binary(ctx, opahttp.BinaryOptions{})
	if err != nil {
		t.Skipf("the OPA command line cannot be built here, so there is no server to test against: %v", err)
	}
	srv, err := opahttp.StartServer(ctx, opahttp.ServerConfig{Binary: bin, Policy: rego.Sources()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	d, err := opahttp.New(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	raw, err := rego.ShippedVectors()
	if err != nil {
		t.Fatal(err)
	}
	var vectors []rego.Vector
	if err := json.Unmarshal(raw, &vectors); err != nil {
		t.Fatal(err)
	}
	if len(vectors) < 10 {
		t.Fatalf("only %d shipped vectors", len(vectors))
	}
	for _, v := range vectors {
		dec, err := d.Decide(ctx, contract.Entrypoint(v.Entrypoint), v.Input)
		if err != nil {
			t.Errorf("%s: %v", v.Name, err)
			continue
		}
		if err := v.Check(dec.Result); err != nil {
			t.Error(err)
		}
	}
	// Every entrypoint denies the empty input, as the registry demands of a
	// candidate policy.
	for _, ep := range contract.Entrypoints() {
		dec, err := d.Decide(ctx, ep, []byte(`{}`))
		if err != nil || dec.Allow {
			t.Errorf("%s on {}: %+v, %v; want a deny", ep, dec, err)
		}
	}
}
