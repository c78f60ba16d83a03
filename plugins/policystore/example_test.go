package policystore_test

import (
	"context"
	"fmt"
	"time"

	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/plugins/policystore"
)

// A registry given the store (plugins.WithStore) appends every activation
// before it takes effect, and starts the newest one (Registry.Start).
func ExampleOpen() {
	ctx := context.Background()
	st, err := policystore.Open(ctx, "", nil) // "": in memory; a directory keeps it
	if err != nil {
		panic(err)
	}
	defer st.Close()
	at := time.Date(2026, 12, 3, 4, 0, 0, 0, time.UTC)
	for _, r := range []plugins.Record{
		{Version: "v1", Kind: "activated", Source: "shipped", At: at, Bundle: []byte("…")},
		{Version: "v2", Kind: "data_updated", Source: "admin data update", Author: "admin token", At: at.Add(time.Minute), Bundle: []byte("…")},
	} {
		if _, err := st.Append(ctx, r); err != nil {
			panic(err)
		}
	}
	hist, _ := st.History(ctx)
	for _, r := range hist {
		fmt.Printf("%d %s %s from %q by %q\n", r.Seq, r.Version, r.Kind, r.Source, r.Author)
	}
	// Output:
	// 1 v1 activated from "shipped" by ""
	// 2 v2 data_updated from "admin data update" by "admin token"
}
