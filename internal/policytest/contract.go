package policytest

import (
	"context"
	"io/fs"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/rego"
)

// Future is an entrypoint of a contract version newer than this binary's.
const Future contract.Entrypoint = "pbac/future"

// futureSrc defines Future, failing closed like every entrypoint.
const futureSrc = "package pbac\n\nfuture := {\"allow\": false, \"reasons\": [\"pbac/future is not decided yet\"]}\n"

// contractBundles are the shipped policy compiled for another contract
// version, once per test binary: an older one (version 1: everything but
// pbac/method) and a newer one (Version+1: every entrypoint and Future).
var contractBundles = sync.OnceValues(func() (map[int]*rego.Bundle, error) {
	src := fstest.MapFS{"future.rego": {Data: []byte(futureSrc)}}
	err := fs.WalkDir(rego.Sources(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(rego.Sources(), p)
		src[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	v1, _ := contract.Required(1)
	old, err := rego.Build(ctx, src, rego.ForContract(1, v1...))
	if err != nil {
		return nil, err
	}
	newer, err := rego.Build(ctx, src, rego.ForContract(contract.Version+1, append(contract.Entrypoints(), Future)...))
	if err != nil {
		return nil, err
	}
	return map[int]*rego.Bundle{1: old, contract.Version + 1: newer}, nil
})

// ContractV1 is the shipped policy as a bundle of contract version 1: it
// declares version 1 and exports every entrypoint but pbac/method, which
// version 2 introduced. It carries no vectors.
func ContractV1(t testing.TB) *rego.Bundle {
	return contractBundle(t, 1)
}

// ContractNext is the shipped policy as a bundle of the next contract
// version (contract.Version+1), exporting every entrypoint of this binary
// and Future. It carries no vectors.
func ContractNext(t testing.TB) *rego.Bundle {
	return contractBundle(t, contract.Version+1)
}

func contractBundle(t testing.TB, v int) *rego.Bundle {
	t.Helper()
	m, err := contractBundles()
	if err != nil {
		t.Fatal(err)
	}
	b := *m[v] // a copy: the caller may change it
	return &b
}
