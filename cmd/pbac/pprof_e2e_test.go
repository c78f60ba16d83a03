package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUpServesProfilesWhenAsked: PBAC_ADMIN_PPROF=true makes the real
// `pbac up` serve Go's profiles on its admin API, to the admin token only;
// without it there are none.
func TestUpServesProfilesWhenAsked(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	for _, on := range []bool{true, false} {
		data := filepath.Join(t.TempDir(), "data")
		env := []string{"PBAC_ADMIN_PPROF=false"}
		if on {
			env = []string{"PBAC_ADMIN_PPROF=true"}
		}
		_, _, adm := startUpArgs(t, env, "--data-dir", data)
		token, err := os.ReadFile(filepath.Join(data, adminTokenFile))
		if err != nil {
			t.Fatal(err)
		}
		get := func(bearer string) (int, string) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, adm+"/admin/debug/pprof/goroutine?debug=1", nil)
			if bearer != "" {
				req.Header.Set("Authorization", "Bearer "+bearer)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		status, body := get(strings.TrimSpace(string(token)))
		switch {
		case on && (status != 200 || !strings.Contains(body, "goroutine profile:")):
			t.Fatalf("with admin_pprof: %d %.200s", status, body)
		case !on && status != 404:
			t.Fatalf("without admin_pprof: %d %.200s, want 404", status, body)
		}
		if status, _ := get(""); status != http.StatusUnauthorized {
			t.Fatalf("profiles without the token: %d, want 401", status)
		}
	}
}
