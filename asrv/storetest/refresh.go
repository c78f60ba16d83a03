package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"
)

// Grace periods of the rotation grace tests. A store judges the window by
// its own clock, which the suite cannot set; the window is a parameter, so
// "within" is an hour and "after" a window long past.
const (
	graceLong  = time.Hour
	graceShort = 20 * time.Millisecond
)

// testRefreshReuseWithinGrace: a refresh token rotated less than the grace
// period ago reads as active through GetRefreshTokenSessionWithin (and
// still as inactive through GetRefreshTokenSession), rotates again without
// error, and leaves the family as it is: the pair the first rotation issued
// stays valid beside the new one. Without a grace period the same reuse is
// refused.
func testRefreshReuseWithinGrace(t *testing.T, f *fixture) {
	c := f.client("agent-1")
	req := request(c, "family-1")
	at0, rt0 := sig(), sig()
	accessKind.mustCreate(f, at0, req)
	refreshKind.mustCreate(f, rt0, req)

	// The first refresh: rotated, its pair stored.
	if err := f.s.RotateRefreshTokenWithin(f.ctx, "family-1", rt0, graceLong); err != nil {
		t.Fatalf("first rotation: %v", err)
	}
	accessKind.wantNotFound(f, at0)
	at1, rt1 := sig(), sig()
	accessKind.mustCreate(f, at1, req)
	refreshKind.mustCreate(f, rt1, req)

	if _, err := f.s.GetRefreshTokenSession(f.ctx, rt0, nil); !errors.Is(err, fosite.ErrInactiveToken) {
		t.Errorf("GetRefreshTokenSession of a token in its grace period: err = %v, want fosite.ErrInactiveToken", err)
	}
	for _, g := range []time.Duration{0, -time.Second} {
		if _, err := f.s.GetRefreshTokenSessionWithin(f.ctx, rt0, g); !errors.Is(err, fosite.ErrInactiveToken) {
			t.Errorf("GetRefreshTokenSessionWithin(grace %v): err = %v, want fosite.ErrInactiveToken", g, err)
		}
		if err := f.s.RotateRefreshTokenWithin(f.ctx, "family-1", rt0, g); !errors.Is(err, fosite.ErrInactiveToken) {
			t.Errorf("RotateRefreshTokenWithin(grace %v): err = %v, want fosite.ErrInactiveToken", g, err)
		}
	}
	got, err := f.s.GetRefreshTokenSessionWithin(f.ctx, rt0, graceLong)
	if err != nil {
		t.Fatalf("GetRefreshTokenSessionWithin within the grace period: %v", err)
	}
	checkRequest(t, got, req)

	// The second refresh with rt0: accepted, nothing of the family ended.
	if err := f.s.RotateRefreshTokenWithin(f.ctx, "family-1", rt0, graceLong); err != nil {
		t.Fatalf("rotation within the grace period: %v", err)
	}
	at2, rt2 := sig(), sig()
	accessKind.mustCreate(f, at2, req)
	refreshKind.mustCreate(f, rt2, req)
	for _, s := range []string{at1, at2} {
		checkRequest(t, accessKind.mustGet(f, s), req)
	}
	for _, s := range []string{rt1, rt2} {
		checkRequest(t, refreshKind.mustGet(f, s), req)
	}

	// The window runs from the first rotation: a reuse does not extend it.
	time.Sleep(2 * graceShort)
	if _, err := f.s.GetRefreshTokenSessionWithin(f.ctx, rt0, graceShort); !errors.Is(err, fosite.ErrInactiveToken) {
		t.Errorf("GetRefreshTokenSessionWithin after the grace period: err = %v, want fosite.ErrInactiveToken", err)
	}

	// An unknown token is unknown, grace or not.
	if _, err := f.s.GetRefreshTokenSessionWithin(f.ctx, sig(), graceLong); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("GetRefreshTokenSessionWithin of an unknown token: err = %v, want fosite.ErrNotFound", err)
	}
	if err := f.s.RotateRefreshTokenWithin(f.ctx, "family-1", sig(), graceLong); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("RotateRefreshTokenWithin of an unknown token: err = %v, want fosite.ErrNotFound", err)
	}
}

// testRefreshReuseAfterGrace: past the grace period a rotated token is
// inactive again, with its request (fosite needs it to revoke the
// family); the reuse handling then ends the whole family, the pair of the
// first rotation included, and no token of it has a grace period left.
func testRefreshReuseAfterGrace(t *testing.T, f *fixture) {
	c := f.client("agent-1")
	req := request(c, "family-1")
	rt0 := sig()
	refreshKind.mustCreate(f, rt0, req)
	other := sig()
	refreshKind.mustCreate(f, other, request(c, "family-2"))
	if err := f.s.RotateRefreshTokenWithin(f.ctx, "family-1", rt0, graceShort); err != nil {
		t.Fatalf("rotation: %v", err)
	}
	at1, rt1 := sig(), sig()
	accessKind.mustCreate(f, at1, req)
	refreshKind.mustCreate(f, rt1, req)
	time.Sleep(2 * graceShort)

	got, err := f.s.GetRefreshTokenSessionWithin(f.ctx, rt0, graceShort)
	if !errors.Is(err, fosite.ErrInactiveToken) {
		t.Fatalf("GetRefreshTokenSessionWithin after the grace period: err = %v, want fosite.ErrInactiveToken", err)
	}
	checkRequest(t, got, req)
	if err := f.s.RotateRefreshTokenWithin(f.ctx, "family-1", rt0, graceShort); !errors.Is(err, fosite.ErrInactiveToken) {
		t.Fatalf("RotateRefreshTokenWithin after the grace period: err = %v, want fosite.ErrInactiveToken", err)
	}
	accessKind.mustGet(f, at1) // a refused rotation ends nothing by itself

	// fosite's reuse handling.
	if err := f.s.DeleteRefreshTokenSession(f.ctx, rt0); err != nil {
		t.Fatal(err)
	}
	if err := f.s.RevokeRefreshToken(f.ctx, "family-1"); err != nil {
		t.Fatal(err)
	}
	if err := f.s.RevokeAccessToken(f.ctx, "family-1"); err != nil {
		t.Fatal(err)
	}
	accessKind.wantNotFound(f, at1)
	if _, err := f.s.GetRefreshTokenSessionWithin(f.ctx, rt1, graceLong); !errors.Is(err, fosite.ErrInactiveToken) {
		t.Errorf("refresh token of the revoked family: err = %v, want fosite.ErrInactiveToken", err)
	}
	if err := f.s.RotateRefreshTokenWithin(f.ctx, "family-1", rt1, graceLong); !errors.Is(err, fosite.ErrInactiveToken) {
		t.Errorf("rotating a refresh token of the revoked family: err = %v, want fosite.ErrInactiveToken", err)
	}
	refreshKind.mustGet(f, other)
}

// testConcurrentRotationWithinGrace: concurrent refreshes with one token
// under a grace period all rotate it, and the pairs they store are
// distinct and all valid (the later rotations delete none of the access
// tokens the earlier ones issued).
func testConcurrentRotationWithinGrace(t *testing.T, f *fixture) {
	c := f.client("agent-1")
	req := request(c, "fam")
	rt := sig()
	refreshKind.mustCreate(f, rt, req)
	const n = 12
	type pair struct{ at, rt string }
	pairs := make([]pair, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			if errs[i] = f.s.RotateRefreshTokenWithin(f.ctx, "fam", rt, graceLong); errs[i] != nil {
				return
			}
			p := pair{sig(), sig()}
			if errs[i] = f.s.CreateAccessTokenSession(f.ctx, p.at, req); errs[i] != nil {
				return
			}
			errs[i] = f.s.CreateRefreshTokenSession(f.ctx, p.rt, p.at, req)
			pairs[i] = p
		})
	}
	close(start)
	wg.Wait()
	seen := map[string]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("refresh %d of %d within the grace period: %v", i+1, n, err)
		}
		seen[pairs[i].at], seen[pairs[i].rt] = true, true
	}
	if len(seen) != 2*n {
		t.Fatalf("%d distinct tokens from %d refreshes, want %d", len(seen), n, 2*n)
	}
	for _, p := range pairs {
		accessKind.mustGet(f, p.at)
		refreshKind.mustGet(f, p.rt)
	}
}

// testRefreshGraceEndsWithTheFamily: revoking the family, or everything
// acting for its person, ends the grace period of its rotated tokens (a
// rotated token is not counted as ended: it was no longer active).
func testRefreshGraceEndsWithTheFamily(t *testing.T, f *fixture) {
	c := f.client("agent-1")
	for _, tc := range []struct {
		name, id string
		revoke   func(t *testing.T)
	}{
		{"revoked family", "fam-revoked-family", func(t *testing.T) {
			if err := f.s.RevokeRefreshToken(f.ctx, "fam-revoked-family"); err != nil {
				t.Fatal(err)
			}
		}},
		{"revoked person", "fam-revoked-person", func(t *testing.T) {
			got, err := f.s.RevokeSubject(f.ctx, "erin", time.Now().Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			if got.RefreshTokens != 1 {
				t.Errorf("RevokeSubject ended %d refresh tokens, want 1 (the rotated one was no longer active)", got.RefreshTokens)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := tc.id
			req := personal(c, id, "erin", time.Now().Add(-time.Minute).UTC().Truncate(time.Second))
			rt0, rt1 := sig(), sig()
			refreshKind.mustCreate(f, rt0, req)
			if err := f.s.RotateRefreshTokenWithin(f.ctx, id, rt0, graceLong); err != nil {
				t.Fatalf("rotation: %v", err)
			}
			refreshKind.mustCreate(f, rt1, req)
			if _, err := f.s.GetRefreshTokenSessionWithin(f.ctx, rt0, graceLong); err != nil {
				t.Fatalf("within the grace period before the revocation: %v", err)
			}
			tc.revoke(t)
			for _, s := range []string{rt0, rt1} {
				if _, err := f.s.GetRefreshTokenSessionWithin(f.ctx, s, graceLong); !errors.Is(err, fosite.ErrInactiveToken) {
					t.Errorf("GetRefreshTokenSessionWithin after the revocation: err = %v, want fosite.ErrInactiveToken", err)
				}
				if err := f.s.RotateRefreshTokenWithin(f.ctx, id, s, graceLong); !errors.Is(err, fosite.ErrInactiveToken) {
					t.Errorf("RotateRefreshTokenWithin after the revocation: err = %v, want fosite.ErrInactiveToken", err)
				}
			}
		})
	}
}
