package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/identity/usersfile"
)

// TestUserAdd: pbac user add reads the password from standard input,
// never from its arguments, and prints an entry (or appends it to --file)
// that signs the person in with their groups.
func TestUserAdd(t *testing.T) {
	out, _, err := run(t, "correct horse battery\n", "user", "add", "dana", "--groups", "engineering,oncall")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "correct horse") || !strings.Contains(out, "$argon2id$v=19$m=65536,t=3,p=4$") {
		t.Fatalf("printed entry:\n%s", out)
	}
	path := filepath.Join(t.TempDir(), "users.yaml")
	if err := os.WriteFile(path, []byte("users:\n"+strings.TrimPrefix(out, "# add under users: in the users file\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := run(t, "battery staple 42\n", "user", "add", "erin", "--groups", "contractor", "--file", path); err != nil {
		t.Fatalf("user add --file: %v\n%s", err, stderr)
	}
	if _, _, err := run(t, "another password\n", "user", "add", "erin", "--file", path); !errors.Is(err, usersfile.ErrExists) {
		t.Fatalf("erin twice: %v, want ErrExists", err)
	}
	f, err := usersfile.Open(path, usersfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for user, pw := range map[string]string{"dana": "correct horse battery", "erin": "battery staple 42"} {
		p, err := f.Authenticate(context.Background(), user, pw)
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		t.Logf("%s: groups %v", user, p.Groups)
	}
	if p, _ := f.Lookup(context.Background(), "dana"); strings.Join(p.Groups, ",") != "engineering,oncall" {
		t.Fatalf("dana's groups %v", p.Groups)
	}
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
	}{
		{"a password as an argument", "correct horse battery\n", []string{"user", "add", "dana", "hunter2hunter2"}},
		{"no password", "", []string{"user", "add", "dana"}},
		{"a short password", "short\n", []string{"user", "add", "dana"}},
		{"an invalid name", "correct horse battery\n", []string{"user", "add", "da na"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if out, _, err := run(t, tc.stdin, tc.args...); err == nil {
				t.Fatalf("accepted:\n%s", out)
			}
		})
	}
}
