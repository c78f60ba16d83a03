package tenantpolicy

import (
	"context"
	"testing"
	"time"
)

func TestBuild(t *testing.T) {
	start := time.Now()
	b, err := Build(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built %d bytes in %v", len(b.Wasm), time.Since(start))
}
