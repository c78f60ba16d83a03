package pgsync_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/internal/pgtest"
	"github.com/pbac-gateway/pbac/internal/policytest"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/rego"
)

// TestSharedDataChangeKeepsItsChecks: a data change of the shipped policy
// travels to the other replica with its data schema and invariant vectors,
// which that replica runs again before activating it; bad data is refused
// on the replica it was sent to and never reaches the others.
func TestSharedDataChangeKeepsItsChecks(t *testing.T) {
	dsn := pgtest.FreshSchema(t)
	shipped, err := policytest.Shipped()
	if err != nil {
		t.Fatal(err)
	}
	a := startReplica(t, dsn, "a", shipped, nil)
	b := startReplica(t, dsn, "b", shipped, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	bad := policytest.BadDataDocuments(t)[0].Data
	if _, err := b.reg.SetData(ctx, bad, "admin"); !errors.As(err, new(*rego.DataError)) || !errors.Is(err, plugins.ErrValidation) {
		t.Fatalf("bad data on b: %v, want a DataError", err)
	}

	var data map[string]any
	if err := json.Unmarshal(shipped.Data, &data); err != nil {
		t.Fatal(err)
	}
	tt := data["agents"].(map[string]any)["trust_tiers"].(map[string]any)
	tt["read_only"] = append(tt["read_only"].([]any), "ci-bot")
	tt["ci_agent"] = []any{}
	moved, _ := json.Marshal(data)
	info, err := b.reg.SetData(ctx, moved, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if conf, err := b.sync.Propagate(ctx); err != nil || !conf.Complete {
		t.Fatalf("propagate: %+v, %v", conf, err)
	}
	// This test is about the checks a runs, not Propagate's wait: a is
	// given until ctx ends to run the change.
	got, _ := a.reg.Active()
	for got.Version != info.Version && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
		got, _ = a.reg.Active()
	}
	if got.Version != info.Version {
		t.Fatalf("a runs %s, want b's %s", got.Version, info.Version)
	}
	if got.Vectors == 0 || got.Vectors != info.Vectors {
		t.Fatalf("a ran %d vectors on the shared change, b %d: want b's invariant vectors, again", got.Vectors, info.Vectors)
	}
	if ab, _ := a.reg.ActiveBundle(); string(ab.Schema) != string(shipped.Schema) {
		t.Fatal("the shared change lost the data schema")
	}
	// A further data change on a is still held to the schema.
	if _, err := a.reg.SetData(ctx, bad, "admin"); !errors.As(err, new(*rego.DataError)) {
		t.Fatalf("bad data on a after the shared change: %v", err)
	}
}
