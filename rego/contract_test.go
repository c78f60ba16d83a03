package rego

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/pbac-gateway/pbac/contract"
)

// contractPolicy defines every entrypoint as a deny, and pbac/future, an
// entrypoint no binary knows yet.
func contractPolicy() fstest.MapFS {
	var src strings.Builder
	src.WriteString("package pbac\n\nd := {\"allow\": false, \"reasons\": [\"no\"]}\n\nfuture := d\n")
	for _, ep := range contract.Names() {
		src.WriteString(strings.TrimPrefix(ep, "pbac/") + " := d\n")
	}
	return fstest.MapFS{"p.rego": {Data: []byte(src.String())}, "data.json": {Data: []byte(`{}`)}}
}

// TestBundleDeclaresContractVersion: a bundle declares the contract version
// it was built for in its manifest (metadata.contract_version), and reading
// it back gives the same version; a bundle without one declares none (0,
// version 1), and a manifest that is not JSON or declares nonsense is
// refused.
func TestBundleDeclaresContractVersion(t *testing.T) {
	ctx := context.Background()
	b, err := Build(ctx, contractPolicy())
	if err != nil {
		t.Fatal(err)
	}
	if b.ContractVersion != contract.Version {
		t.Fatalf("Build declares %d, want %d", b.ContractVersion, contract.Version)
	}
	roundTrip := func(b *Bundle) *Bundle {
		t.Helper()
		var buf bytes.Buffer
		if err := b.WriteTarGz(&buf); err != nil {
			t.Fatal(err)
		}
		got, err := ReadTarGz(&buf)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := roundTrip(b); got.ContractVersion != contract.Version || got.Revision != b.Revision {
		t.Fatalf("read back: version %d, revision %s", got.ContractVersion, got.Revision)
	}
	files, err := b.tarFiles()
	if err != nil {
		t.Fatal(err)
	}
	if m := string(files[tarManifest]); !strings.Contains(m, fmt.Sprintf(`"metadata":{"contract_version":%d}`, contract.Version)) {
		t.Fatalf("manifest %s", m)
	}

	// A bundle for an older contract, and one declaring none.
	old, err := Build(ctx, contractPolicy(), ForContract(1, contract.Register, contract.Token, contract.Introspect,
		contract.Exchange, contract.ToolCall, contract.List, contract.Anonymous))
	if err != nil {
		t.Fatal(err)
	}
	got := roundTrip(old)
	if got.ContractVersion != 1 {
		t.Fatalf("an older bundle reads as version %d", got.ContractVersion)
	}
	if files, _ := old.tarFiles(); strings.Contains(string(files[tarManifest]), "pbac/method") {
		t.Fatalf("the manifest of a version 1 bundle lists pbac/method: %s", files[tarManifest])
	}
	none := &Bundle{Wasm: b.Wasm, Data: b.Data}
	if got := roundTrip(none); got.ContractVersion != 0 {
		t.Fatalf("a bundle that declares nothing reads as version %d", got.ContractVersion)
	}

	for _, tc := range []struct{ name, manifest string }{
		{"not JSON", `{"revision":`},
		{"not a number", `{"metadata":{"contract_version":"two"}}`},
		{"zero", `{"metadata":{"contract_version":0}}`},
		{"a fraction", `{"metadata":{"contract_version":1.5}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files, _ := b.tarFiles()
			files[tarManifest] = []byte(tc.manifest)
			var buf bytes.Buffer
			if err := writeTarGz(&buf, files); err != nil {
				t.Fatal(err)
			}
			if _, err := ReadTarGz(&buf); err == nil || !strings.Contains(err.Error(), ".manifest") {
				t.Fatalf("err = %v, want one about the manifest", err)
			}
		})
	}
	// Metadata of the author's own is not ours to refuse.
	files, _ = b.tarFiles()
	files[tarManifest] = []byte(`{"metadata":{"owner":"team-a"}}`)
	var buf bytes.Buffer
	if err := writeTarGz(&buf, files); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadTarGz(&buf); err != nil || got.ContractVersion != 0 {
		t.Fatalf("author metadata: %v, version %d", err, got.ContractVersion)
	}
}

// TestShippedDataReadsAsTheContractView: the shipped data reads as
// contract.Data, with the catalogue, the scopes and the rules the gateway,
// the dashboard and the AS read of it.
func TestShippedDataReadsAsTheContractView(t *testing.T) {
	raw, err := fs.ReadFile(Sources(), "data.json")
	if err != nil {
		t.Fatal(err)
	}
	d, err := contract.ParseData(raw)
	if err != nil {
		t.Fatal(err)
	}
	tools := 0
	for name := range d.Catalogue {
		if contract.IsToolName(name) {
			tools++
		}
	}
	if n := len(d.Catalogue); n != 27 || tools != 25 {
		t.Errorf("%d catalogue entries, %d of them tools; want the 25 demo tools and jira's prompt and issues", n, tools)
	}
	if e := d.Catalogue["jira.resource:jira://issue/"]; !e.URIPrefix || e.Scope() != "jira:read" {
		t.Errorf("jira's issues: %+v", e)
	}
	scopes := d.Scopes()
	for _, want := range []string{"drive:read", "gitlab:merge", "database:ddl", "jenkins:deploy"} {
		if !slices.Contains(scopes, want) {
			t.Errorf("scopes %v lack %s", scopes, want)
		}
	}
	if sc := d.Catalogue["drive.read_file"].Scope(); sc != "drive:read" {
		t.Errorf("drive.read_file needs %q", sc)
	}
	if got := d.ProtectedArgs("drive"); !slices.Contains(got, "path") {
		t.Errorf("drive's protected arguments %v", got)
	}
	if len(d.Agents.TrustTiers) == 0 || d.Tiers["developer"].TokenTTLSeconds == 0 {
		t.Errorf("agents %+v, developer tier %+v", d.Agents, d.Tiers["developer"])
	}
}
