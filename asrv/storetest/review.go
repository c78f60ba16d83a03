package storetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/asrv"
)

// review returns an update that records an operator's decision.
func review(status, provider string) func(*asrv.Client) error {
	return func(c *asrv.Client) error {
		c.Review = &asrv.ClientReview{Status: status, Provider: provider, By: "admin", At: time.Now().UTC().Truncate(time.Second)}
		return nil
	}
}

// testUpdateClient: UpdateClient is a read-modify-write of the stored
// client; an update that fails stores nothing, the id cannot change, an
// unknown id is fosite.ErrNotFound, and a token read right after the
// update carries the updated client (a store's read cache included).
func testUpdateClient(t *testing.T, f *fixture) {
	c := f.client("reviewed")
	tok := sig()
	accessKind.mustCreate(f, tok, request(c, "r1"))
	// Read it first, so that a store with a read cache has it cached.
	viewer, hasViewer := f.s.(asrv.AccessTokenViewer)
	if hasViewer {
		if _, err := viewer.ViewAccessToken(f.ctx, tok); err != nil {
			t.Fatalf("ViewAccessToken: %v", err)
		}
	}
	accessKind.mustGet(f, tok)

	got, err := f.s.UpdateClient(f.ctx, c.ID, review(asrv.ReviewRejected, ""))
	if err != nil {
		t.Fatalf("UpdateClient: %v", err)
	}
	if !got.Rejected() || got.ID != c.ID || got.Name != c.Name {
		t.Fatalf("UpdateClient returned %+v (review %+v)", got, got.Review)
	}
	if stored, err := f.s.Client(f.ctx, c.ID); err != nil || !stored.Rejected() {
		t.Fatalf("Client after the update = %+v, %v; want rejected", stored, err)
	}
	if r := accessKind.mustGet(f, tok); !r.GetClient().(*asrv.Client).Rejected() {
		t.Fatal("GetAccessTokenSession after the update returned the client as it was")
	}
	if hasViewer {
		r, err := viewer.ViewAccessToken(f.ctx, tok)
		if err != nil || !r.GetClient().(*asrv.Client).Rejected() {
			t.Fatalf("ViewAccessToken after the update = %v, %v; want the rejected client", r, err)
		}
	}

	refused := errors.New("refused by the update")
	if _, err := f.s.UpdateClient(f.ctx, c.ID, func(c *asrv.Client) error {
		c.Review = nil
		return refused
	}); !errors.Is(err, refused) {
		t.Fatalf("UpdateClient with a failing update = %v; want its error", err)
	}
	if _, err := f.s.UpdateClient(f.ctx, c.ID, func(c *asrv.Client) error {
		c.ID = "someone-else"
		c.Review = nil
		return nil
	}); err == nil {
		t.Fatal("UpdateClient changed the client id")
	}
	if stored, err := f.s.Client(f.ctx, c.ID); err != nil || !stored.Rejected() {
		t.Fatalf("Client after failed updates = %+v, %v; want it still rejected", stored, err)
	}
	if _, err := f.s.Client(f.ctx, "someone-else"); !errors.Is(err, fosite.ErrNotFound) {
		t.Fatalf("a client appeared under the changed id: %v", err)
	}
	for _, id := range []string{"unknown", "", strings.Repeat("x", asrv.MaxStoreIDLen+1)} {
		if _, err := f.s.UpdateClient(f.ctx, id, review(asrv.ReviewApproved, "p")); !errors.Is(err, fosite.ErrNotFound) {
			t.Errorf("UpdateClient(%.10q) = %v; want fosite.ErrNotFound", id, err)
		}
	}
}

// testUpdateClientConcurrent: concurrent updates of one client each see
// the one before: none is lost.
func testUpdateClientConcurrent(t *testing.T, f *fixture) {
	c := f.client("busy")
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = f.s.UpdateClient(f.ctx, c.ID, func(c *asrv.Client) error {
				c.Scopes = append(c.Scopes, fmt.Sprintf("s%d", i))
				return nil
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	got, err := f.s.Client(f.ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Scopes) != len(c.Scopes)+n {
		t.Fatalf("after %d concurrent updates the client has %d scopes, want %d: %v", n, len(got.Scopes), len(c.Scopes)+n, got.Scopes)
	}
}

// testReviewedPending: an operator's approval keeps a registration (it is
// no longer pending, so it never expires); a rejected registration that
// never obtained a code or token stays pending and expires like any; a
// person's word changes nothing of that.
func testReviewedPending(t *testing.T, f *fixture) {
	old := time.Now().Add(-48 * time.Hour)
	approved := f.unverified("approved", old)
	rejected := f.unverified("rejected", old)
	vouched := f.unverified("vouched", old)
	usedThenRejected := f.unverified("used-then-rejected", old)
	codeKind.mustCreate(f, sig(), request(usedThenRejected, "r"))
	f.wantCounts(4, 3)
	pending, err := f.s.PendingClients(f.ctx)
	if err != nil {
		t.Fatalf("PendingClients: %v", err)
	}
	for _, id := range []string{approved.ID, rejected.ID, vouched.ID} {
		if at, ok := pending[id]; !ok || !at.Equal(old.UTC().Truncate(time.Second)) {
			t.Errorf("PendingClients[%q] = %v, %v; want %v", id, at, ok, old.UTC().Truncate(time.Second))
		}
	}
	if _, ok := pending[usedThenRejected.ID]; ok || len(pending) != 3 {
		t.Errorf("PendingClients = %v; want the three without a code", pending)
	}

	for id, update := range map[string]func(*asrv.Client) error{
		approved.ID:         review(asrv.ReviewApproved, "claude-code"),
		rejected.ID:         review(asrv.ReviewRejected, ""),
		usedThenRejected.ID: review(asrv.ReviewRejected, ""),
		vouched.ID: func(c *asrv.Client) error {
			c.Vouch = &asrv.ClientVouch{Subject: "alice", Provider: "claude-code", At: time.Now().UTC().Truncate(time.Second)}
			return nil
		},
	} {
		if _, err := f.s.UpdateClient(f.ctx, id, update); err != nil {
			t.Fatalf("UpdateClient(%q): %v", id, err)
		}
	}
	f.wantCounts(4, 2)
	n, err := f.s.DeletePendingClients(f.ctx, time.Now().Add(-24*time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("DeletePendingClients = %d, %v; want 2 (the rejected and the vouched)", n, err)
	}
	for id, kept := range map[string]bool{approved.ID: true, usedThenRejected.ID: true, rejected.ID: false, vouched.ID: false} {
		_, err := f.s.Client(f.ctx, id)
		if kept && err != nil {
			t.Errorf("client %q was deleted: %v", id, err)
		}
		if !kept && !errors.Is(err, fosite.ErrNotFound) {
			t.Errorf("client %q survived the sweep: %v", id, err)
		}
	}
	f.wantCounts(2, 0)
}
