package rego_test

import (
	"testing"

	"github.com/pbac-gateway/pbac/rego"
)

// BenchmarkCheckData is what the data check adds to every data change:
// compiling the shipped schema, validating the shipped data, and the
// cross-references.
func BenchmarkCheckData(b *testing.B) {
	schema, data := shippedSchemaAndData(b)
	for b.Loop() {
		if err := rego.CheckData(schema, data); err != nil {
			b.Fatal(err)
		}
	}
}
