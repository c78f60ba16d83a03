package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readLines returns the records of a JSON-lines file.
func readLines(t *testing.T, path string) []Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: bad line %q: %v", path, sc.Text(), err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func checkMode(t *testing.T, path string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("%s mode %v, want 0600", path, st.Mode().Perm())
	}
}

func TestFileSinkRotation(t *testing.T) {
	tests := []struct {
		name       string
		maxBytes   int64
		maxBackups int
		n          int
		wantAll    bool // every record still on disk
	}{
		{"no rotation", 1 << 20, 3, 50, true},
		{"keep all backups", 2048, 0, 200, true},
		{"keep 3 backups", 2048, 3, 200, false},
		{"keep 1 backup", 1024, 1, 100, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "logs", "audit.jsonl")
			s, err := newFileSink(path, tc.maxBytes, tc.maxBackups)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < tc.n; i += 7 { // uneven batches
				var batch []Record
				for j := i; j < min(i+7, tc.n); j++ {
					batch = append(batch, rec(j))
				}
				if err := s.Write(context.Background(), batch); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if err := s.Write(context.Background(), []Record{rec(0)}); err == nil {
				t.Fatal("write after close succeeded")
			}
			backups, err := s.Backups()
			if err != nil {
				t.Fatal(err)
			}
			if tc.maxBytes >= 1<<20 && len(backups) != 0 {
				t.Fatalf("unexpected backups %v", backups)
			}
			if tc.maxBytes < 1<<20 && len(backups) == 0 {
				t.Fatal("no backups after exceeding the size")
			}
			if tc.maxBackups > 0 && len(backups) > tc.maxBackups {
				t.Fatalf("%d backups kept, max %d", len(backups), tc.maxBackups)
			}
			// Oldest first: backups in order, then the live file; the
			// records form a contiguous run ending with the newest.
			var all []Record
			for _, f := range append(backups, path) {
				checkMode(t, f)
				st, _ := os.Stat(f)
				if st.Size() > tc.maxBytes {
					t.Fatalf("%s is %d bytes, max %d", f, st.Size(), tc.maxBytes)
				}
				all = append(all, readLines(t, f)...)
			}
			if tc.wantAll && len(all) != tc.n {
				t.Fatalf("%d records on disk, want %d", len(all), tc.n)
			}
			first := tc.n - len(all)
			for i, r := range all {
				if r.RequestID != rec(first+i).RequestID {
					t.Fatalf("record %d is %s, want %s", i, r.RequestID, rec(first+i).RequestID)
				}
			}
		})
	}
}

func TestFileSinkOversizedRecordAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	s, err := newFileSink(path, 512, 0)
	if err != nil {
		t.Fatal(err)
	}
	big := rec(1)
	big.Reasons = []string{strings.Repeat("r", 2000)}
	if err := s.Write(context.Background(), []Record{rec(0), big, rec(2)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	backups, _ := s.Backups()
	if len(backups) != 2 {
		t.Fatalf("backups %v, want 2", backups)
	}
	if got := readLines(t, backups[1]); len(got) != 1 || got[0].RequestID != big.RequestID {
		t.Fatalf("oversized record not alone in its file: %v", ids(got))
	}
	// Reopening appends; a pre-existing wider mode is tightened.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	s2, err := NewFileSink(path, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Write(context.Background(), []Record{rec(3)}); err != nil {
		t.Fatal(err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	checkMode(t, path)
	if got := ids(readLines(t, path)); len(got) != 2 || got[1] != rec(3).RequestID {
		t.Fatalf("after reopen: %v", got)
	}
}

// Public constructor: 1 MB files, ~3 MB of records.
func TestFileSinkRotationMB(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a few MB")
	}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	s, err := NewFileSink(path, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	r := rec(0)
	r.Reasons = []string{strings.Repeat("z", 900)}
	batch := make([]Record, 100)
	for i := range batch {
		batch[i] = r
	}
	for range 35 { // ~3.5 MB
		if err := s.Write(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	backups, _ := s.Backups()
	if len(backups) != 2 {
		t.Fatalf("backups %v, want 2", backups)
	}
	for _, b := range backups {
		st, _ := os.Stat(b)
		if st.Size() > 1<<20 || st.Size() < 1<<19 {
			t.Fatalf("backup %s size %d", b, st.Size())
		}
	}
}

// TestFileSinkWritesTheLinesItIsGiven: a LineSink stores the batch's lines
// as given (it does not encode the records again), encodes a record whose
// line is missing, and refuses lines that are not one per record, writing
// none of that batch.
func TestFileSinkWritesTheLinesItIsGiven(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	s, err := NewFileSink(path, 10, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	recs := []Record{rec(1), rec(2)}
	given := []byte(`{"request_id":"as-given"}`)
	if err := s.WriteLines(ctx, recs, [][]byte{given, nil}); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteLines(ctx, recs, [][]byte{given}); !errors.Is(err, ErrLinesMismatch) {
		t.Fatalf("one line for two records: %v, want ErrLinesMismatch", err)
	}
	got := readLines(t, path)
	if len(got) != 2 || got[0].RequestID != "as-given" || got[1].RequestID != recs[1].RequestID {
		t.Fatalf("file holds %+v, want the given line, then record 2 encoded", got)
	}
}
