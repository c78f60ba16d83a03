package asrv_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestStoreDriversOnlyInTheirBackend: importing the AS (or the store
// contract, or what the backends share) links no database driver; each
// token-store backend is its own package and links only its own driver, so
// a binary links Badger or pgx only by importing asrv/store/badger or
// asrv/store/postgres. Checked with `go list -deps` on the packages as they
// build (tests excluded).
func TestStoreDriversOnlyInTheirBackend(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	const (
		mod         = "github.com/pbac-gateway/pbac/"
		badger      = "github.com/dgraph-io/badger"
		pgx         = "github.com/jackc/pgx"
		badgerStore = mod + "asrv/store/badger"
		pgStore     = mod + "asrv/store/postgres"
	)
	// forbidden are package paths, each with everything under it.
	tests := []struct {
		pkg       string
		forbidden []string
	}{
		{"asrv", []string{badger, pgx, badgerStore, pgStore}},
		{"asrv/store", []string{badger, pgx, badgerStore, pgStore}},
		{"asrv/storetest", []string{badger, pgx, badgerStore, pgStore}},
		{"asrv/store/badger", []string{pgx, pgStore}},
		{"asrv/store/postgres", []string{badger, badgerStore}},
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.pkg, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, goBin, "list", "-deps", mod+tc.pkg).Output()
			if err != nil {
				var stderr []byte
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = ee.Stderr
				}
				t.Fatalf("go list -deps %s: %v\n%s", tc.pkg, err, stderr)
			}
			deps := strings.Fields(string(out))
			if len(deps) == 0 {
				t.Fatalf("go list -deps %s listed nothing", tc.pkg)
			}
			for _, f := range tc.forbidden {
				var linked []string
				for _, dep := range deps {
					if dep == f || strings.HasPrefix(dep, f+"/") {
						linked = append(linked, dep)
					}
				}
				if len(linked) > 0 {
					t.Errorf("%s links %s: %d packages, the first %s", tc.pkg, f, len(linked), linked[0])
				}
			}
		})
	}
}
