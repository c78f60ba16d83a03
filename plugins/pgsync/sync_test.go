package pgsync_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/internal/pgtest"
	"github.com/pbac-gateway/pbac/internal/policytest"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/plugins/pgsync"
	"github.com/pbac-gateway/pbac/rego"
	"github.com/pbac-gateway/pbac/wasm"
)

// replica is one registry with a sync running.
type replica struct {
	reg  *plugins.Registry
	sync *pgsync.Sync
	stop func()
}

func startReplica(t *testing.T, dsn, name string, initial *rego.Bundle, verify *rego.Verifier) *replica {
	t.Helper()
	ctx := context.Background()
	e, err := wasm.NewEngine(ctx, wasm.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	reg := plugins.New(e)
	if _, err := reg.Activate(ctx, initial, "shipped"); err != nil {
		t.Fatal(err)
	}
	if verify != nil {
		reg.RequireSignatures(verify)
	}
	s, err := pgsync.Open(ctx, pgsync.Config{DSN: dsn, Registry: reg, Replica: name, Interval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = s.Run(rctx); close(done) }()
	r := &replica{reg: reg, sync: s}
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			_ = s.Close(ctx)
			_ = reg.Close(ctx)
			_ = e.Close(ctx)
		})
	}
	t.Cleanup(r.stop)
	return r
}

func (r *replica) marker(t *testing.T) float64 {
	t.Helper()
	d, err := r.reg.Decide(context.Background(), "pbac/tool_call", []byte(`{"user":"alice"}`))
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Marker float64 `json:"marker"`
	}
	if err := d.Decode(&out); err != nil {
		t.Fatalf("decision %s: %v", d.Result, err)
	}
	return out.Marker
}

// TestDataChangeReachesEveryReplicaBeforePropagateReturns: three replicas
// join (the first one's version becomes the head, the others adopt it even
// though they started with another); a data change on one is running on
// all three when Propagate returns, so every replica's next decision uses
// it; a rollback on another replica travels the same way.
func TestDataChangeReachesEveryReplicaBeforePropagateReturns(t *testing.T) {
	dsn := pgtest.FreshSchema(t)
	a := startReplica(t, dsn, "a", policytest.Versioned(t, 1, "alice"), nil)
	b := startReplica(t, dsn, "b", policytest.Versioned(t, 2, "alice"), nil)
	c := startReplica(t, dsn, "c", policytest.Versioned(t, 3, "alice"), nil)
	for _, r := range []*replica{a, b, c} {
		if m := r.marker(t); m != 1 {
			t.Fatalf("%s decides with marker %v after joining, want the head's 1", r.sync.Replica(), m)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.reg.SetData(ctx, []byte(`{"marker": 7, "allowed": ["alice"]}`), "admin"); err != nil {
		t.Fatal(err)
	}
	conf, err := b.sync.Propagate(ctx)
	if err != nil {
		t.Fatalf("propagate: %v (%+v)", err, conf)
	}
	if !conf.Complete || len(conf.Confirmed) != 3 {
		t.Fatalf("confirmation %+v, want all three", conf)
	}
	for _, r := range []*replica{a, b, c} {
		if m := r.marker(t); m != 7 {
			t.Errorf("%s: next decision has marker %v after Propagate returned, want 7", r.sync.Replica(), m)
		}
	}

	if _, err := c.reg.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.sync.Propagate(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*replica{a, b, c} {
		if m := r.marker(t); m != 1 {
			t.Errorf("%s: marker %v after a rollback on c, want 1", r.sync.Replica(), m)
		}
	}
	st := a.sync.Status(ctx)
	if st.HeadSeq < 3 || st.Applied != st.HeadSeq || len(st.Members) != 3 {
		t.Errorf("status %+v: want head seq ≥ 3, applied = head, three members", st)
	}

	// A replica that leaves is not waited for.
	a.stop()
	if _, err := b.reg.SetData(ctx, []byte(`{"marker": 8, "allowed": ["alice"]}`), "admin"); err != nil {
		t.Fatal(err)
	}
	conf, err = b.sync.Propagate(ctx)
	if err != nil || len(conf.Confirmed) != 2 {
		t.Fatalf("after a replica left: %+v, %v; want b and c confirmed", conf, err)
	}
}

// TestChangeWithoutPropagateIsPublished: a change nobody propagates
// explicitly (a dropped bundle, the dashboard) is published by Run and
// reaches the others within moments.
func TestChangeWithoutPropagateIsPublished(t *testing.T) {
	dsn := pgtest.FreshSchema(t)
	a := startReplica(t, dsn, "a", policytest.Versioned(t, 1, "alice"), nil)
	b := startReplica(t, dsn, "b", policytest.Versioned(t, 1, "alice"), nil)
	if _, err := a.reg.Activate(context.Background(), policytest.Versioned(t, 5, "alice"), "dir:x.tar.gz"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.marker(t) != 5 {
		if time.Now().After(deadline) {
			t.Fatal("a change activated on a without Propagate never reached b")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSignedReplicaRefusesUnsignedHead: a replica that requires signatures
// keeps its version when an unsigned bundle is published, says why, and is
// reported pending; a signed bundle then reaches it.
func TestSignedReplicaRefusesUnsignedHead(t *testing.T) {
	dsn := pgtest.FreshSchema(t)
	priv, pub := policytest.SigningKeys(t)
	v, err := rego.NewVerifier(rego.VerificationKey{PEM: pub})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := rego.NewSigner(priv, "")
	if err != nil {
		t.Fatal(err)
	}

	loose := startReplica(t, dsn, "loose", policytest.Versioned(t, 1, "alice"), nil)
	strict := startReplica(t, dsn, "strict", policytest.Versioned(t, 1, "alice"), v)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := loose.reg.SetData(ctx, []byte(`{"marker": 9, "allowed": ["alice"]}`), "admin"); err != nil {
		t.Fatal(err)
	}
	conf, err := loose.sync.Propagate(ctx)
	if !errors.Is(err, pgsync.ErrNotConfirmed) || conf.Complete || len(conf.Pending) != 1 || conf.Pending[0].ID != "strict" {
		t.Fatalf("unsigned head: %+v, %v; want strict pending and ErrNotConfirmed", conf, err)
	}
	if !strings.Contains(conf.Pending[0].Refused, "signature") {
		t.Errorf("the pending replica's entry does not say why it refused: %+v", conf.Pending[0])
	}
	if m := strict.marker(t); m != 1 {
		t.Errorf("the strict replica runs marker %v, want its own 1", m)
	}
	if st := strict.sync.Status(context.Background()); !strings.Contains(st.Error, "signature") {
		t.Errorf("strict status %+v: want the refusal's reason", st)
	}

	var buf bytes.Buffer
	if err := policytest.Versioned(t, 10, "alice").WriteSignedTarGz(&buf, signer); err != nil {
		t.Fatal(err)
	}
	signed, err := rego.ReadTarGz(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if _, err := loose.reg.Activate(ctx2, signed, "admin upload"); err != nil {
		t.Fatal(err)
	}
	if conf, err := loose.sync.Propagate(ctx2); err != nil || !conf.Complete {
		t.Fatalf("signed head: %+v, %v", conf, err)
	}
	if m := strict.marker(t); m != 10 {
		t.Errorf("the strict replica runs marker %v after a signed head, want 10", m)
	}
}
