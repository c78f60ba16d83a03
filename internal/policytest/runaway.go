package policytest

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/pbac-gateway/pbac/rego"
)

//go:embed testdata/runaway.rego
var runawaySrc []byte

// Under the Runaway policy, token requests by a client with software_id
// RunawaySoftwareID run away, and so do calls of RunawayTool (a tool the
// catalogue does not list, on the drive backend) with "runaway": true in
// their arguments.
const (
	RunawaySoftwareID = "runaway"
	RunawayTool       = "drive.runaway"
)

// runaway is the Runaway bundle, compiled once per test binary.
var runaway = sync.OnceValues(func() (*rego.Bundle, error) {
	src := rego.Sources()
	files := fstest.MapFS{"runaway.rego": {Data: runawaySrc}}
	err := fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(src, p)
		if err != nil {
			return err
		}
		files[p] = &fstest.MapFile{Data: b}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var data map[string]any
	if err := json.Unmarshal(files["data.json"].Data, &data); err != nil {
		return nil, err
	}
	// 1000³ iterations: seconds, far past any deadline, yet data small
	// enough that a new instance parses it quickly.
	big := make(map[string]string, 1000)
	for i := range 1000 {
		big[fmt.Sprintf("k%d", i)] = "v"
	}
	data["runaway_big"] = big
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	files["data.json"] = &fstest.MapFile{Data: raw}
	// A bundle with data of its own declares it in its data schema.
	var schema map[string]any
	if err := json.Unmarshal(files["data.schema.json"].Data, &schema); err != nil {
		return nil, err
	}
	schema["properties"].(map[string]any)["runaway_big"] = map[string]any{"type": "object"}
	if raw, err = json.Marshal(schema); err != nil {
		return nil, err
	}
	files["data.schema.json"] = &fstest.MapFile{Data: raw}
	return rego.Build(context.Background(), files)
})

// Runaway returns the shipped policy with decisions that run away on
// request, until a deadline stops them: a tools/call of a tool the
// catalogue does not list (such as RunawayTool) whose arguments hold
// "runaway": true, and a token request by a client whose software
// statement names RunawaySoftwareID. Every other decision is the shipped
// policy's.
func Runaway(t testing.TB) *rego.Bundle {
	t.Helper()
	b, err := runaway()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
