package usersfile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/identity"
)

// cheap keeps the tests fast; the parsing, timing and reload rules do not
// depend on the cost.
var cheap = Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func entry(t testing.TB, name, password string, groups ...string) Entry {
	t.Helper()
	e, err := NewEntry(name, groups, []byte(password), cheap)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// usersFile writes a users file with entries and opens it.
func usersFile(t testing.TB, c *clock, entries ...Entry) (*File, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users.yaml")
	for _, e := range entries {
		if err := Append(path, e); err != nil {
			t.Fatal(err)
		}
	}
	f, err := Open(path, Options{Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return f, path
}

// TestAuthenticate: the right password signs the person in with their
// groups; a wrong password and an unknown name are the same error.
func TestAuthenticate(t *testing.T) {
	c := &clock{t: time.Unix(1e9, 0)}
	f, _ := usersFile(t, c, entry(t, "dana", "correct horse", "engineering", "oncall"), entry(t, "erin", "battery staple", "contractor"))
	ctx := context.Background()
	for _, tc := range []struct {
		name, user, password string
		want                 identity.Person
		err                  error
	}{
		{"the right password", "dana", "correct horse", identity.Person{Subject: "dana", Name: "dana", Groups: []string{"engineering", "oncall"}}, nil},
		{"another person's password", "dana", "battery staple", identity.Person{}, identity.ErrBadCredentials},
		{"a wrong password", "erin", "battery stapler", identity.Person{}, identity.ErrBadCredentials},
		{"an unknown name", "mallory", "correct horse", identity.Person{}, identity.ErrBadCredentials},
		{"the name in other case", "Dana", "correct horse", identity.Person{}, identity.ErrBadCredentials},
		{"an empty password", "dana", "", identity.Person{}, identity.ErrBadCredentials},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := f.Authenticate(ctx, tc.user, tc.password)
			if err != tc.err || got.Subject != tc.want.Subject || !slices.Equal(got.Groups, tc.want.Groups) {
				t.Fatalf("Authenticate = %+v, %v; want %+v, %v", got, err, tc.want, tc.err)
			}
		})
	}
	if _, err := f.Lookup(ctx, "mallory"); !errors.Is(err, identity.ErrUnknownPerson) {
		t.Fatalf("Lookup of an unknown person: %v", err)
	}
}

// TestUnknownNameCostsAWrongPassword: an unknown name is checked against a
// hash with the parameters the file's entries use (the most common ones),
// so it does the same argon2id work as a wrong password. (The time is
// shown by BenchmarkAuthenticate.)
func TestUnknownNameCostsAWrongPassword(t *testing.T) {
	dear := Params{Memory: 128, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}
	e1, _ := NewEntry("a", nil, []byte("password-a"), cheap)
	e2, _ := NewEntry("b", nil, []byte("password-b"), dear)
	e3, _ := NewEntry("c", nil, []byte("password-c"), dear)
	var b bytes.Buffer
	b.WriteString("users:\n")
	for _, e := range []Entry{e1, e2, e3} {
		raw, _ := e.Marshal()
		b.Write(raw)
	}
	snap, err := parse(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if snap.dummy.p != dear {
		t.Fatalf("dummy hash parameters %+v, want the common %+v", snap.dummy.p, dear)
	}
	empty, _ := parse(nil)
	if empty.dummy.p != DefaultParams {
		t.Fatalf("an empty file's dummy parameters %+v, want the defaults", empty.dummy.p)
	}
}

// TestReload: the file is re-read when it changes, at most once per
// CheckEvery: a person added signs in, one removed is gone (Lookup fails,
// so their tokens stop), new groups show in Lookup; a broken edit leaves
// the previous version in use; a deleted file means nobody.
func TestReload(t *testing.T) {
	c := &clock{t: time.Unix(1e9, 0)}
	ctx := context.Background()
	f, path := usersFile(t, c, entry(t, "dana", "correct horse", "engineering"))
	if err := Append(path, entry(t, "erin", "battery staple", "contractor")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Authenticate(ctx, "erin", "battery staple"); err == nil {
		t.Fatal("the file was re-read within CheckEvery")
	}
	c.add(time.Second)
	if _, err := f.Authenticate(ctx, "erin", "battery staple"); err != nil {
		t.Fatalf("a person added: %v", err)
	}

	// Move dana to analytics and remove erin.
	raw, _ := os.ReadFile(path)
	doc := strings.Replace(string(raw), "[engineering]", "[analytics]", 1)
	doc = doc[:strings.Index(doc, "  - name: erin")]
	if err := writeAtomic(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	c.add(time.Second)
	if p, err := f.Lookup(ctx, "dana"); err != nil || !slices.Equal(p.Groups, []string{"analytics"}) {
		t.Fatalf("dana after the edit: %+v, %v", p, err)
	}
	if _, err := f.Lookup(ctx, "erin"); !errors.Is(err, identity.ErrUnknownPerson) {
		t.Fatalf("erin after removal: %v", err)
	}

	if err := os.WriteFile(path, []byte("users:\n  - name: dana\n    pasword_hash: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.add(time.Second)
	if _, err := f.Authenticate(ctx, "dana", "correct horse"); err != nil {
		t.Fatalf("a broken edit: %v, want the previous version in use", err)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	c.add(time.Second)
	if _, err := f.Authenticate(ctx, "dana", "correct horse"); !errors.Is(err, identity.ErrBadCredentials) {
		t.Fatalf("a deleted file: %v, want nobody", err)
	}
	if err := Append(path, entry(t, "dana", "new password")); err != nil {
		t.Fatal(err)
	}
	c.add(time.Second)
	if _, err := f.Authenticate(ctx, "dana", "new password"); err != nil {
		t.Fatalf("the file back: %v", err)
	}
}

// TestParseRefusals: a users file that is not exactly right does not load.
func TestParseRefusals(t *testing.T) {
	good := entry(t, "dana", "correct horse")
	h := good.PasswordHash
	salt, key := strings.Split(h, "$")[4], strings.Split(h, "$")[5]
	for _, tc := range []struct{ name, doc string }{
		{"an unknown field", "users:\n  - name: dana\n    password_hash: " + h + "\n    admin: true\n"},
		{"a misspelt list", "user:\n  - name: dana\n"},
		{"a name listed twice", "users:\n  - {name: dana, password_hash: '" + h + "'}\n  - {name: dana, password_hash: '" + h + "'}\n"},
		{"a name with a space", "users:\n  - {name: 'da na', password_hash: '" + h + "'}\n"},
		{"an empty name", "users:\n  - {name: '', password_hash: '" + h + "'}\n"},
		{"no hash", "users:\n  - {name: dana}\n"},
		{"a bcrypt hash", "users:\n  - {name: dana, password_hash: '$2a$10$abcdefghijklmnopqrstuuOr0e1rU2sHK4zfvuJ6ug6HDpm1bF4qC'}\n"},
		{"argon2i, not argon2id", "users:\n  - {name: dana, password_hash: '$argon2i$v=19$m=64,t=1,p=1$" + salt + "$" + key + "'}\n"},
		{"version 16", "users:\n  - {name: dana, password_hash: '$argon2id$v=16$m=64,t=1,p=1$" + salt + "$" + key + "'}\n"},
		{"1 GiB of memory", "users:\n  - {name: dana, password_hash: '$argon2id$v=19$m=1048576,t=1,p=1$" + salt + "$" + key + "'}\n"},
		{"100 passes", "users:\n  - {name: dana, password_hash: '$argon2id$v=19$m=64,t=100,p=1$" + salt + "$" + key + "'}\n"},
		{"parameters out of order", "users:\n  - {name: dana, password_hash: '$argon2id$v=19$t=1,m=64,p=1$" + salt + "$" + key + "'}\n"},
		{"padded base64", "users:\n  - {name: dana, password_hash: '$argon2id$v=19$m=64,t=1,p=1$" + salt + "==$" + key + "'}\n"},
		{"a short salt", "users:\n  - {name: dana, password_hash: '$argon2id$v=19$m=64,t=1,p=1$c2FsdA$" + key + "'}\n"},
		{"an empty group", "users:\n  - {name: dana, password_hash: '" + h + "', groups: ['']}\n"},
		{"a group with a newline", "users:\n  - {name: dana, password_hash: '" + h + "', groups: [\"a\\nb\"]}\n"},
		{"not YAML", "users: [\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parse([]byte(tc.doc)); err == nil {
				t.Fatalf("parsed:\n%s", tc.doc)
			}
		})
	}
	if _, err := parse([]byte("users:\n  - {name: dana, password_hash: '" + h + "', groups: [engineering], display_name: Dana, email: d@example.com}\n")); err != nil {
		t.Fatalf("a good file: %v", err)
	}
}

// TestAppend: entries are added to an existing file keeping its comments
// and mode, a name already there is refused, and a new file is 0600.
func TestAppend(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users.yaml")
	e := entry(t, "dana", "correct horse", "engineering")
	if err := os.WriteFile(path, []byte("# people of the lab\nusers: []  # none yet\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := Append(path, e); err != nil {
		t.Fatal(err)
	}
	if err := Append(path, entry(t, "erin", "battery staple")); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if !bytes.Contains(raw, []byte("# people of the lab")) || !bytes.Contains(raw, []byte("groups: [engineering]")) {
		t.Fatalf("file after two appends:\n%s", raw)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, want 0640 kept", fi.Mode().Perm())
	}
	if err := Append(path, entry(t, "dana", "another password")); !errors.Is(err, ErrExists) {
		t.Fatalf("a second dana: %v, want ErrExists", err)
	}
	snap, err := parse(raw)
	if err != nil || len(snap.users) != 2 {
		t.Fatalf("the file holds %v, %v", snap, err)
	}
	fresh := filepath.Join(dir, "new.yaml")
	if err := Append(fresh, e); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(fresh); fi.Mode().Perm() != 0o600 {
		t.Fatalf("a new file's mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := NewEntry("dana", nil, []byte("short"), cheap); err == nil {
		t.Fatal("a 5-character password was hashed")
	}
	if _, err := NewEntry("da na", nil, []byte("long enough"), cheap); err == nil {
		t.Fatal("an invalid name was accepted")
	}
}

// TestConcurrentChecksBounded: password checks beyond MaxConcurrent wait,
// and give up when their context ends.
func TestConcurrentChecksBounded(t *testing.T) {
	c := &clock{t: time.Unix(1e9, 0)}
	f, _ := usersFile(t, c, entry(t, "dana", "correct horse"))
	f.sem = make(chan struct{}, 1)
	f.sem <- struct{}{} // a check in progress
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := f.Authenticate(ctx, "dana", "correct horse"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Authenticate with no free slot: %v, want the context's error", err)
	}
	<-f.sem
	if _, err := f.Authenticate(context.Background(), "dana", "correct horse"); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkAuthenticate: a wrong password and an unknown name, at the
// default cost (they should take the same time).
func BenchmarkAuthenticate(b *testing.B) {
	e, err := NewEntry("dana", nil, []byte("correct horse"), DefaultParams)
	if err != nil {
		b.Fatal(err)
	}
	f, _ := usersFile(b, &clock{t: time.Unix(1e9, 0)}, e)
	for _, user := range []string{"dana", "mallory"} {
		b.Run("user="+user, func(b *testing.B) {
			for b.Loop() {
				_, _ = f.Authenticate(context.Background(), user, "wrong password")
			}
		})
	}
}

// FuzzParseHash: no string makes the hash parser panic, and one it accepts
// is in canonical form (it re-encodes to itself).
func FuzzParseHash(f *testing.F) {
	h, _ := HashPassword([]byte("correct horse"), cheap)
	f.Add(h)
	f.Add(strings.Replace(h, "m=64", "m=064", 1))
	f.Add("$argon2id$v=19$m=64,t=1,p=1$$")
	f.Add("$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseHash(s)
		if err != nil {
			return
		}
		again := fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", got.p.Memory, got.p.Time, got.p.Threads, b64.EncodeToString(got.salt), b64.EncodeToString(got.key))
		if again != s {
			t.Fatalf("accepted %q, which re-encodes as %q", s, again)
		}
		if got.p.check() != nil {
			t.Fatalf("accepted %q with parameters out of bounds", s)
		}
	})
}

// FuzzParse: no users file makes the parser panic, and every person in one
// it accepts has a valid name and printable groups.
func FuzzParse(f *testing.F) {
	h, _ := HashPassword([]byte("correct horse"), cheap)
	f.Add([]byte("users:\n  - {name: dana, password_hash: '" + h + "', groups: [engineering]}\n"))
	f.Add([]byte("users: []\n"))
	f.Add([]byte("users:\n  - name: &a dana\n    password_hash: *a\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		snap, err := parse(raw)
		if err != nil {
			return
		}
		for name, u := range snap.users {
			if !validName.MatchString(name) || u.person.Subject != name {
				t.Fatalf("accepted the name %q", name)
			}
			for _, g := range u.person.Groups {
				if g == "" || !printable(g) {
					t.Fatalf("accepted the group %q", g)
				}
			}
		}
	})
}
