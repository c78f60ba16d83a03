package badger_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/asrv/store/badger"
	"github.com/pbac-gateway/pbac/asrv/storetest"
)

// TestReadCacheAgreesWithTheStore is differential: a random run of the
// store's writes (tokens issued, delegated, revoked, consumed, deleted;
// clients re-described and deleted; subjects revoked; codes and JTIs
// stored; the clock moving), and after each, every access token read
// through the cache answers as a read past the cache does (the same
// client, client scopes and granted scopes, or not found).
func TestReadCacheAgreesWithTheStore(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) { readCacheRun(t, seed) })
	}
}

func readCacheRun(t *testing.T, seed uint64) {
	ctx := context.Background()
	clk := storetest.NewClock(time.Now())
	s := openMem(t, badger.WithClock(clk.Now))
	defer s.Close()
	rnd := mrand.New(mrand.NewPCG(seed, 1))
	ids := []string{"agent-a", "agent-b", "agent-c", "agent-d"}
	clients := map[string]*asrv.Client{}
	register := func(id string) {
		c := storetest.NewClient(id)
		if err := s.CreateClient(ctx, c); err == nil {
			clients[id] = c
		}
	}
	for _, id := range ids {
		register(id)
	}
	var sigs, reqs []string
	pick := func(xs []string) string {
		if len(xs) == 0 {
			return "none"
		}
		return xs[rnd.IntN(len(xs))]
	}
	request := func(who, subject string) *fosite.Request {
		c := clients[who]
		if c == nil {
			c = storetest.NewClient(who)
		}
		id := rand.Text()
		r := storetest.NewRequest(c, id)
		sess := r.Session.(*asrv.Session)
		sess.Subject = subject
		sess.SetExpiresAt(fosite.AccessToken, clk.Now().Add(time.Duration(1+rnd.IntN(60))*time.Minute))
		reqs = append(reqs, id)
		return r
	}
	check := func(step int, op string) {
		t.Helper()
		for _, sig := range sigs {
			req, err := s.GetAccessTokenSession(ctx, sig, nil)
			id, scopes, granted, uerr := s.UncachedAccessForTest(sig)
			switch {
			case (err == nil) != (uerr == nil):
				t.Fatalf("step %d after %s: token %s: cached read %v, store %v", step, op, sig[:6], err, uerr)
			case err != nil:
			case req.GetClient().GetID() != id || !slices.Equal(req.GetClient().GetScopes(), scopes) || !slices.Equal(req.GetGrantedScopes(), granted):
				t.Fatalf("step %d after %s: token %s: cached read client %s %v granted %v, store %s %v %v", step, op, sig[:6],
					req.GetClient().GetID(), req.GetClient().GetScopes(), req.GetGrantedScopes(), id, scopes, granted)
			}
		}
	}
	for step := range 400 {
		var op string
		switch n := rnd.IntN(12); n {
		case 0, 1, 2:
			op = "issue"
			sig := rand.Text()
			if s.CreateAccessTokenSession(ctx, sig, request(pick(ids), pick([]string{"alice", "bob"}))) == nil {
				sigs = append(sigs, sig)
			}
		case 3:
			op = "delegate"
			sig := rand.Text()
			r := request(pick(ids), "alice")
			r.Session.(*asrv.Session).Act = &asrv.Actor{Sub: pick(ids)}
			if s.CreateDelegatedAccessToken(ctx, sig, r, pick(sigs), rnd.IntN(3) == 0) == nil {
				sigs = append(sigs, sig)
			}
		case 4:
			op = "revoke"
			_ = s.RevokeAccessToken(ctx, pick(reqs))
		case 5:
			op = "consume"
			_, _ = s.ConsumeAccessToken(ctx, pick(sigs))
		case 6:
			op = "delete token"
			_ = s.DeleteAccessTokenSession(ctx, pick(sigs))
		case 7:
			op = "re-describe client"
			_, _ = s.UpdateClient(ctx, pick(ids), func(c *asrv.Client) error {
				c.Scopes = []string{fmt.Sprint("scope-", step)}
				return nil
			})
		case 8:
			op = "delete client, register it again"
			id := pick(ids)
			if rnd.IntN(2) == 0 {
				_ = s.DeleteClient(ctx, id)
				delete(clients, id)
			} else {
				register(id)
			}
		case 9:
			op = "revoke subject"
			_, _ = s.RevokeSubject(ctx, pick([]string{"alice", "bob"}), clk.Now().Add(time.Minute))
		case 10:
			op = "other writes"
			_ = s.SetClientAssertionJWT(ctx, rand.Text(), clk.Now().Add(time.Minute))
			_ = s.CreateAuthorizeCodeSession(ctx, rand.Text(), request(pick(ids), "bob"))
		case 11:
			op = "time passes"
			clk.Add(time.Duration(rnd.IntN(10)) * time.Minute)
		}
		check(step, op)
	}
}

// TestReadCacheKeepsWhatAWriteDidNotTouch: writes about other tokens and
// clients (another token issued, revoked or consumed; another client
// registered; a code, a JTI) leave a read token in the cache; its own
// client's change takes it out.
func TestReadCacheKeepsWhatAWriteDidNotTouch(t *testing.T) {
	ctx := context.Background()
	s := openMem(t)
	defer s.Close()
	a, b := storetest.NewClient("agent-a"), storetest.NewClient("agent-b")
	for _, c := range []*asrv.Client{a, b} {
		if err := s.CreateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	issue := func(c *asrv.Client, id string) string {
		sig := rand.Text()
		if err := s.CreateAccessTokenSession(ctx, sig, storetest.NewRequest(c, id)); err != nil {
			t.Fatal(err)
		}
		return sig
	}
	mine := issue(a, "mine")
	if _, err := s.GetAccessTokenSession(ctx, mine, nil); err != nil {
		t.Fatal(err)
	}
	issue(b, "other")
	writes := []struct {
		name  string
		write func() error
	}{
		{"another token issued", func() error { issue(a, "more"); return nil }},
		{"another token revoked", func() error { return s.RevokeAccessToken(ctx, "other") }},
		{"another token consumed", func() error { _, err := s.ConsumeAccessToken(ctx, issue(b, "once")); return err }},
		{"another client registered", func() error { return s.CreateClient(ctx, storetest.NewClient("agent-new")) }},
		{"another client deleted", func() error { return s.DeleteClient(ctx, b.ID) }},
		{"a JTI", func() error { return s.SetClientAssertionJWT(ctx, "jti-1", time.Now().Add(time.Minute)) }},
		{"a code", func() error { return s.CreateAuthorizeCodeSession(ctx, rand.Text(), storetest.NewRequest(a, "code")) }},
	}

	for _, w := range writes {
		if err := w.write(); err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		if !s.CachedForTest(mine) {
			t.Errorf("after %s the token is no longer cached", w.name)
		}
	}
	if _, err := s.UpdateClient(ctx, a.ID, func(c *asrv.Client) error { c.Scopes = []string{"changed"}; return nil }); err != nil {
		t.Fatal(err)
	}
	if s.CachedForTest(mine) {
		t.Error("its own client's change left the token cached")
	}
	req, err := s.GetAccessTokenSession(ctx, mine, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := req.GetClient().GetScopes(); !slices.Equal(got, []string{"changed"}) {
		t.Errorf("read after the change: client scopes %v", got)
	}
	if err := s.RevokeAccessToken(ctx, "mine"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAccessTokenSession(ctx, mine, nil); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("after its revocation: %v", err)
	}
}
