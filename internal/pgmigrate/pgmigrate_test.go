package pgmigrate

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestMigrationsAreNamedAndNumberedWithoutGaps(t *testing.T) {
	sql := &fstest.MapFile{Data: []byte("SELECT 1;")}
	tests := []struct {
		name    string
		files   fstest.MapFS
		want    int    // latest version, when err is empty
		wantErr string // part of the error
	}{
		{"ordered", fstest.MapFS{"m/0002_b.sql": sql, "m/0001_a.sql": sql}, 2, ""},
		{"gap", fstest.MapFS{"m/0001_a.sql": sql, "m/0003_c.sql": sql}, 0, "version 3 where 2"},
		{"bad name", fstest.MapFS{"m/0001_a.sql": sql, "m/2_b.sql": sql}, 0, "NNNN_name.sql"},
		{"upper case", fstest.MapFS{"m/0001_A.sql": sql}, 0, "NNNN_name.sql"},
		{"none", fstest.MapFS{"m/.keep": {}}, 0, "NNNN_name.sql"},
		{"no dir", fstest.MapFS{}, 0, "read embedded migrations"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := Set{Files: tc.files, Dir: "m", Table: "t", LockKey: 1}
			ms, err := s.Migrations()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one with %q", err, tc.wantErr)
				}
				if s.Latest() != 0 {
					t.Errorf("Latest = %d for a broken set, want 0", s.Latest())
				}
				return
			}
			if err != nil || len(ms) != tc.want || ms[0].Name != "a" || s.Latest() != tc.want {
				t.Fatalf("migrations %+v, %v; want %d in order", ms, err, tc.want)
			}
		})
	}
}
