package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/asrv"
)

// personal is request(c, reqID) acting for the person sub, whose grant
// began at authTime.
func personal(c *asrv.Client, reqID, sub string, authTime time.Time) *fosite.Request {
	r := request(c, reqID)
	sess := r.Session.(*asrv.Session)
	sess.Subject, sess.AuthTime, sess.Act = sub, authTime, nil
	return r
}

// testRevokeSubject: revoking everything acting for a person deletes their
// codes, PKCE requests and access tokens (delegated ones included), makes
// their refresh tokens inactive (a rotation is then refused), leaves other
// people's and machine tokens alone, counts what it ended, and refuses
// later tokens of the person's earlier grants but not of a new sign-in.
func testRevokeSubject(t *testing.T, f *fixture) {
	a, b := f.client("agent-a"), f.client("agent-b")
	signedIn := time.Now().Add(-time.Minute)
	type stored struct{ code, pkce, at, rt, delegated string }
	put := func(sub, grant string) stored {
		s := stored{code: sig(), pkce: sig(), at: sig(), rt: sig(), delegated: sig()}
		r := personal(a, grant, sub, signedIn)
		codeKind.mustCreate(f, s.code, r)
		kindByType("pkce").mustCreate(f, s.pkce, r)
		accessKind.mustCreate(f, s.at, r)
		refreshKind.mustCreate(f, s.rt, r)
		d := personal(b, "delegated-"+grant, sub, signedIn)
		d.Session.(*asrv.Session).Act = &asrv.Actor{Sub: a.ID}
		f.mustDelegate(s.delegated, d, s.at, false)
		return s
	}
	dana1, dana2, erin := put("dana", "dana-1"), put("dana", "dana-2"), put("erin", "erin-1")
	machine := sig()
	m := request(a, "machine-1")
	m.Session.(*asrv.Session).Subject = ""
	accessKind.mustCreate(f, machine, m)
	// A redeemed code of dana's goes but is not counted, nor is an expired
	// token.
	redeemed := sig()
	codeKind.mustCreate(f, redeemed, personal(a, "dana-0", "dana", signedIn))
	if err := f.s.InvalidateAuthorizeCodeSession(f.ctx, redeemed); err != nil {
		t.Fatal(err)
	}
	expired := personal(a, "dana-old", "dana", signedIn)
	expired.Session.(*asrv.Session).SetExpiresAt(fosite.AccessToken, time.Now().Add(-time.Second))
	accessKind.mustCreate(f, sig(), expired)

	got, err := f.s.RevokeSubject(f.ctx, "dana", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatalf("RevokeSubject: %v", err)
	}
	if want := (asrv.SubjectRevocation{AccessTokens: 4, RefreshTokens: 2, Codes: 2}); got != want {
		t.Errorf("RevokeSubject counted %+v, want %+v", got, want)
	}
	codeKind.wantNotFound(f, redeemed)
	for _, s := range []stored{dana1, dana2} {
		codeKind.wantNotFound(f, s.code)
		kindByType("pkce").wantNotFound(f, s.pkce)
		accessKind.wantNotFound(f, s.at)
		accessKind.wantNotFound(f, s.delegated)
		if _, err := f.s.GetRefreshTokenSession(f.ctx, s.rt, nil); !errors.Is(err, fosite.ErrInactiveToken) {
			t.Errorf("dana's refresh token after the revocation: %v, want fosite.ErrInactiveToken", err)
		}
		if err := f.s.RotateRefreshToken(f.ctx, "dana-1", s.rt); !errors.Is(err, fosite.ErrInactiveToken) {
			t.Errorf("rotating dana's refresh token: %v, want fosite.ErrInactiveToken", err)
		}
	}
	codeKind.mustGet(f, erin.code)
	kindByType("pkce").mustGet(f, erin.pkce)
	accessKind.mustGet(f, erin.at)
	accessKind.mustGet(f, erin.delegated)
	refreshKind.mustGet(f, erin.rt)
	accessKind.mustGet(f, machine)

	// A token of a grant that began before the revocation is refused
	// (a refresh or an exchange that was under way), every kind of it.
	for _, k := range kinds {
		if err := k.create(f, sig(), personal(a, "dana-1", "dana", signedIn)); !errors.Is(err, asrv.ErrSubjectRevoked) {
			t.Errorf("create %s of dana's earlier grant: %v, want asrv.ErrSubjectRevoked", k.name, err)
		}
	}
	if err := f.s.CreateDelegatedAccessToken(f.ctx, sig(), personal(b, "d", "dana", signedIn), erin.at, false); !errors.Is(err, asrv.ErrSubjectRevoked) {
		t.Errorf("delegated token of dana's earlier grant: %v, want asrv.ErrSubjectRevoked", err)
	}
	if err := f.s.CreateAccessTokenSession(f.ctx, sig(), personal(a, "dana-x", "dana", time.Time{})); !errors.Is(err, asrv.ErrSubjectRevoked) {
		t.Errorf("a grant of dana's without a sign-in time: %v, want asrv.ErrSubjectRevoked", err)
	}
	// Dana signs in again: a new grant is not affected.
	again := sig()
	accessKind.mustCreate(f, again, personal(a, "dana-3", "dana", time.Now().Add(time.Second)))
	accessKind.mustGet(f, again)
	// Erin, never revoked, keeps getting tokens of old grants.
	accessKind.mustCreate(f, sig(), personal(a, "erin-1", "erin", signedIn))

	// Revoking again ends the new grant; revoking nobody ends nothing.
	if got, err := f.s.RevokeSubject(f.ctx, "dana", time.Now().Add(time.Hour)); err != nil || got.AccessTokens != 1 {
		t.Errorf("second RevokeSubject: %+v, %v; want the one new access token", got, err)
	}
	if got, err := f.s.RevokeSubject(f.ctx, "nobody", time.Now().Add(time.Hour)); err != nil || got != (asrv.SubjectRevocation{}) {
		t.Errorf("RevokeSubject(nobody) = %+v, %v", got, err)
	}
	if _, err := f.s.RevokeSubject(f.ctx, "", time.Now().Add(time.Hour)); err == nil {
		t.Error("RevokeSubject of an empty subject succeeded")
	}
}

// testRevokeSubjectRacingStores: tokens of a person's grant stored while
// the person is being revoked either fail or are gone when the revocation
// returns: none survives it.
func testRevokeSubjectRacingStores(t *testing.T, f *fixture) {
	a := f.client("agent-a")
	signedIn := time.Now().Add(-time.Minute)
	for round := range 10 {
		sub := fmt.Sprintf("frank-%d", round)
		var (
			mu     sync.Mutex
			sigs   []string
			stop   atomic.Bool
			wg     sync.WaitGroup
			stored atomic.Int64
		)
		for w := range 4 {
			wg.Go(func() {
				for i := 0; !stop.Load() && i < 200; i++ {
					s := sig()
					err := f.s.CreateAccessTokenSession(f.ctx, s, personal(a, fmt.Sprintf("grant-%d-%d", w, i), sub, signedIn))
					if err == nil {
						stored.Add(1)
						mu.Lock()
						sigs = append(sigs, s)
						mu.Unlock()
					}
				}
			})
		}
		// Let some get in first.
		for deadline := time.Now().Add(5 * time.Second); stored.Load() < 2 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		if _, err := f.s.RevokeSubject(f.ctx, sub, time.Now().Add(time.Hour)); err != nil {
			t.Fatalf("round %d: RevokeSubject: %v", round, err)
		}
		mu.Lock()
		before := slices.Clone(sigs)
		mu.Unlock()
		for _, s := range before {
			accessKind.wantNotFound(f, s)
		}
		stop.Store(true)
		wg.Wait()
		// Whatever was stored after the revocation returned must be
		// refused too; nothing stored ever survives.
		for _, s := range sigs {
			accessKind.wantNotFound(f, s)
		}
		if round == 0 {
			t.Logf("%d tokens stored before the revocation, all ended", len(before))
		}
	}
}
