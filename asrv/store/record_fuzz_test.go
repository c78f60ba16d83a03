package store

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/pbac-gateway/pbac/asrv"
)

// FuzzDecodeRecord: bytes read from the database are outside input
// once someone tampers with the files. Decoding and rebuilding a request
// must never panic, and whatever decodes must still obey the form
// allow-list.
func FuzzDecodeRecord(f *testing.F) {
	sess := &asrv.Session{Subject: "alice", ClientID: "c1", Act: &asrv.Actor{Sub: "a", Act: &asrv.Actor{Sub: "b"}}, Roles: []string{"r"}}
	sess.SetExpiresAt(fosite.AccessToken, time.Unix(1_900_000_000, 0))
	valid, err := json.Marshal(&Record{
		Version: RecordVersion, ID: "req-1", ClientID: "c1",
		RequestedAt:  time.Unix(1_800_000_000, 0).UTC(),
		GrantedScope: []string{"tools:read"},
		Form:         url.Values{"redirect_uri": {"https://a.example/cb"}, "code_verifier": {"x"}},
		Session:      sess, Inactive: true, AccessSignature: "sig",
	})
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(valid), "", "null", "{}", "[]", `{"v":1}`, `{"v":1,"id":"r","client_id":"c"}`,
		`{"v":1,"id":"r","client_id":"c","session":{"act":{"act":{"act":null}}}}`,
		`{"v":1,"id":"r","client_id":"c","form":{"client_secret":["s"],"scope":null}}`,
		`{"v":1,"id":"r","client_id":"c","session":{"expires_at":{"access_token":"x"}}}`,
		`{"v":1,"id":"r","client_id":"c","requested_at":"0001-01-01T00:00:00Z","session":{"roles":null}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := DecodeRecord(b)
		if err != nil {
			if rec != nil {
				t.Fatal("record returned with an error")
			}
			return
		}
		req := rec.Request(&asrv.Client{ID: rec.ClientID})
		for k := range req.GetRequestForm() {
			if !persistedFormKeys[k] {
				t.Fatalf("form key %q survived decoding", k)
			}
		}
		s, ok := req.GetSession().(*asrv.Session)
		if !ok || s == nil {
			t.Fatalf("session %T", req.GetSession())
		}
		_ = s.GetExpiresAt(fosite.AccessToken)
		_ = s.Act.Depth()
		_ = s.Clone()
		_ = req.GetID()
		_ = req.GetClient().GetID()
		_ = req.GetGrantedScopes().Has("x")
		_ = req.Sanitize(nil)
		if _, err := json.Marshal(rec); err != nil {
			t.Fatalf("re-encode: %v", err)
		}
	})
}
