package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// durationCase is one load of a duration key: a file body and
// environment, and the value resolved or the error load gives.
type durationCase struct {
	name, body string
	env        map[string]string
	want       time.Duration
	wantErr    string
}

// checkDurationKey loads each case and compares what resolve (the key's
// resolver, named name) gives, then that the key table's default for key
// is def.
func checkDurationKey(t *testing.T, key, name string, def time.Duration, resolve func(*ASrv) (time.Duration, error), cases []durationCase) {
	t.Helper()
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := LoadEnv(write(tc.body), func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := resolve(cfg.ASrv)
			if err != nil || got != tc.want {
				t.Fatalf("%s() = %v, %v; want %v", name, got, err, tc.want)
			}
		})
	}
	k, ok := Lookup(key)
	if d, err := time.ParseDuration(k.Default); !ok || err != nil || d != def {
		t.Fatalf("the table's default %q is not %v", k.Default, def)
	}
}

// TestMaxSignInAge: asrv.max_sign_in_age comes from the file or
// PBAC_MAX_SIGN_IN_AGE (which wins), is 24h when absent (the table's
// default says so too), and a duration that is not one, zero or negative
// is refused at load.
func TestMaxSignInAge(t *testing.T) {
	checkDurationKey(t, "asrv.max_sign_in_age", "SignInMaxAge", DefaultMaxSignInAge, (*ASrv).SignInMaxAge, []durationCase{
		{name: "absent: 24h", want: 24 * time.Hour},
		{name: "from the file", body: "asrv: {max_sign_in_age: 8h}\n", want: 8 * time.Hour},
		{name: "from the environment", env: map[string]string{"PBAC_MAX_SIGN_IN_AGE": "90m"}, want: 90 * time.Minute},
		{name: "the environment over the file", body: "asrv: {max_sign_in_age: 8h}\n", env: map[string]string{"PBAC_MAX_SIGN_IN_AGE": "1h"}, want: time.Hour},
		{name: "not a duration", body: "asrv: {max_sign_in_age: a day}\n", wantErr: `asrv.max_sign_in_age "a day": want a positive duration`},
		{name: "a number without a unit", env: map[string]string{"PBAC_MAX_SIGN_IN_AGE": "24"}, wantErr: `asrv.max_sign_in_age "24"`},
		{name: "zero: a sign-in that never ends", body: "asrv: {max_sign_in_age: 0s}\n", wantErr: `asrv.max_sign_in_age "0s"`},
		{name: "negative", env: map[string]string{"PBAC_MAX_SIGN_IN_AGE": "-1h"}, wantErr: `asrv.max_sign_in_age "-1h"`},
	})
}

// TestAccessTokenTTL: asrv.access_token_ttl comes from the file or
// PBAC_ACCESS_TOKEN_TTL (which wins), is 10m when absent (the table's
// default says so too), and a duration that is not one, zero or negative
// is refused at load.
func TestAccessTokenTTL(t *testing.T) {
	checkDurationKey(t, "asrv.access_token_ttl", "AccessTokenLifetime", DefaultAccessTokenTTL, (*ASrv).AccessTokenLifetime, []durationCase{
		{name: "absent: 10m", want: 10 * time.Minute},
		{name: "from the file", body: "asrv: {access_token_ttl: 5m}\n", want: 5 * time.Minute},
		{name: "from the environment", env: map[string]string{"PBAC_ACCESS_TOKEN_TTL": "8s"}, want: 8 * time.Second},
		{name: "the environment over the file", body: "asrv: {access_token_ttl: 5m}\n", env: map[string]string{"PBAC_ACCESS_TOKEN_TTL": "1m"}, want: time.Minute},
		{name: "a number without a unit", env: map[string]string{"PBAC_ACCESS_TOKEN_TTL": "600"}, wantErr: `asrv.access_token_ttl "600"`},
		{name: "zero", body: "asrv: {access_token_ttl: 0s}\n", wantErr: `asrv.access_token_ttl "0s"`},
		{name: "negative", env: map[string]string{"PBAC_ACCESS_TOKEN_TTL": "-1m"}, wantErr: `asrv.access_token_ttl "-1m"`},
	})
}

// TestRefreshReuseGrace: asrv.refresh_reuse_grace comes from the file or
// PBAC_REFRESH_REUSE_GRACE (which wins), is 10s when absent (the table's
// default says so too), 0 turns it off, and a duration that is not one,
// negative or longer than a minute is refused at load.
func TestRefreshReuseGrace(t *testing.T) {
	checkDurationKey(t, "asrv.refresh_reuse_grace", "RefreshReuseGracePeriod", DefaultRefreshReuseGrace, (*ASrv).RefreshReuseGracePeriod, []durationCase{
		{name: "absent: 10s", want: 10 * time.Second},
		{name: "from the file", body: "asrv: {refresh_reuse_grace: 30s}\n", want: 30 * time.Second},
		{name: "from the environment", env: map[string]string{"PBAC_REFRESH_REUSE_GRACE": "2s"}, want: 2 * time.Second},
		{name: "the environment over the file", body: "asrv: {refresh_reuse_grace: 30s}\n", env: map[string]string{"PBAC_REFRESH_REUSE_GRACE": "5s"}, want: 5 * time.Second},
		{name: "zero turns it off", body: "asrv: {refresh_reuse_grace: 0s}\n", want: 0},
		{name: "the longest", env: map[string]string{"PBAC_REFRESH_REUSE_GRACE": "1m"}, want: time.Minute},
		{name: "longer than a minute", env: map[string]string{"PBAC_REFRESH_REUSE_GRACE": "61s"}, wantErr: `asrv.refresh_reuse_grace "61s"`},
		{name: "a number without a unit", env: map[string]string{"PBAC_REFRESH_REUSE_GRACE": "10"}, wantErr: `asrv.refresh_reuse_grace "10"`},
		{name: "negative", body: "asrv: {refresh_reuse_grace: -1s}\n", wantErr: `asrv.refresh_reuse_grace "-1s"`},
	})
}
