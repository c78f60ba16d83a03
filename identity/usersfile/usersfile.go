// Package usersfile is the people of a small or air-gapped install without
// an identity provider: a YAML file of names, argon2id password hashes and
// groups (identity.users_file), which pbac user add writes to.
//
//	users:
//	  - name: dana
//	    password_hash: $argon2id$v=19$m=65536,t=3,p=4$…$…
//	    groups: [engineering]
//	    display_name: Dana Engineer   # optional
//	    email: dana@example.com       # optional
//
// The file is read at Open and again when it changes: every sign-in and
// lookup stats it (at most once a second) and reloads it when its size,
// modification time or identity changed. A changed file that does not load
// (a half-saved edit, a typo) leaves the previous version in use, logged
// as an error; a deleted file means nobody.
package usersfile

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"regexp"
	"runtime"
	"slices"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"

	"github.com/pbac-gateway/pbac/identity"
)

// Limits on a users file.
const (
	maxFileBytes = 4 << 20
	maxGroups    = 256
	maxTextBytes = 256
)

// validName: a user name is 1 to 64 of letters, digits and ._@- starting
// with a letter or digit, so it reads the same in a URL, a log and policy.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// Entry is one person in the file.
type Entry struct {
	Name         string   `yaml:"name"`
	PasswordHash string   `yaml:"password_hash"`
	Groups       []string `yaml:"groups,omitempty,flow"`
	DisplayName  string   `yaml:"display_name,omitempty"`
	Email        string   `yaml:"email,omitempty"`
}

type document struct {
	Users []Entry `yaml:"users"`
}

// user is a checked entry.
type user struct {
	person identity.Person
	hash   hash
}

// snapshot is one loaded version of the file.
type snapshot struct {
	users map[string]user
	// dummy is checked for unknown names: a hash with the parameters most
	// entries use, so an unknown name costs what a wrong password does.
	dummy hash
}

// Options tune a File; zero values take the defaults.
type Options struct {
	// CheckEvery is how often, at most, the file is stat'ed; default 1 s.
	CheckEvery time.Duration
	// MaxConcurrent bounds password checks running at once (each takes
	// the hash's memory); default GOMAXPROCS. Others wait, as long as
	// their context allows.
	MaxConcurrent int
	Logger        *slog.Logger
	Now           func() time.Time
}

// File is the users file as an identity.PasswordSource. Safe for concurrent
// use; it starts no goroutine.
type File struct {
	path  string
	every time.Duration
	sem   chan struct{}
	log   *slog.Logger
	now   func() time.Time

	mu      sync.Mutex
	snap    *snapshot
	stamp   os.FileInfo // the version snap was loaded from (nil: none)
	checked time.Time
}

var _ identity.PasswordSource = (*File)(nil)

// Open reads the users file at path; it must exist and load.
func Open(path string, o Options) (*File, error) {
	if o.CheckEvery <= 0 {
		o.CheckEvery = time.Second
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = runtime.GOMAXPROCS(0)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("identity.users_file: %w", err)
	}
	snap, err := load(path)
	if err != nil {
		return nil, fmt.Errorf("identity.users_file: %s: %w", path, err)
	}
	return &File{path: path, every: o.CheckEvery, sem: make(chan struct{}, o.MaxConcurrent), log: o.Logger, now: o.Now,
		snap: snap, stamp: fi, checked: o.Now()}, nil
}

// Authenticate implements identity.PasswordSource. An unknown name is
// checked against a hash of the same cost as the file's, so it takes as
// long as a wrong password.
func (f *File) Authenticate(ctx context.Context, username, password string) (identity.Person, error) {
	snap := f.current(ctx)
	u, known := snap.users[username]
	h := snap.dummy
	if known {
		h = u.hash
	}
	select {
	case f.sem <- struct{}{}:
	case <-ctx.Done():
		return identity.Person{}, fmt.Errorf("wait to check a password: %w", ctx.Err())
	}
	ok := h.matches(password)
	<-f.sem
	if !known || !ok {
		return identity.Person{}, identity.ErrBadCredentials
	}
	return clonePerson(u.person), nil
}

// Lookup implements identity.PasswordSource: the person as the file says
// now (a person removed from it no longer exists; their groups are
// today's).
func (f *File) Lookup(ctx context.Context, subject string) (identity.Person, error) {
	u, ok := f.current(ctx).users[subject]
	if !ok {
		return identity.Person{}, fmt.Errorf("%w: %q is not in the users file", identity.ErrUnknownPerson, subject)
	}
	return clonePerson(u.person), nil
}

// Names lists the people in the file, sorted.
func (f *File) Names(ctx context.Context) []string {
	return slices.Sorted(maps.Keys(f.current(ctx).users))
}

// current is the file's latest version that loaded, re-reading the file
// when it changed.
func (f *File) current(ctx context.Context) *snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if now.Sub(f.checked) < f.every {
		return f.snap
	}
	f.checked = now
	fi, err := os.Stat(f.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if f.stamp != nil {
			f.log.WarnContext(ctx, "users file removed: nobody signs in from it", "path", f.path)
			f.snap, f.stamp = &snapshot{users: map[string]user{}, dummy: f.snap.dummy}, nil
		}
		return f.snap
	case err != nil:
		f.log.ErrorContext(ctx, "users file: stat failed; the loaded version stays in use", "path", f.path, "err", err)
		return f.snap
	case f.stamp != nil && sameVersion(fi, f.stamp):
		return f.snap
	}
	snap, err := load(f.path)
	f.stamp = fi // a broken version is reported once, not every second
	if err != nil {
		f.log.ErrorContext(ctx, "users file changed but does not load; the previous version stays in use", "path", f.path, "err", err)
		return f.snap
	}
	f.log.InfoContext(ctx, "users file reloaded", "path", f.path, "users", len(snap.users))
	f.snap = snap
	return snap
}

func sameVersion(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// load reads and checks the file.
func load(path string) (*snapshot, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	raw, err := io.ReadAll(io.LimitReader(fh, maxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > maxFileBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxFileBytes)
	}
	return parse(raw)
}

// parse checks a users file's content: known fields only, unique valid
// names, argon2id hashes within bounds, groups and texts printable.
func parse(raw []byte) (*snapshot, error) {
	var doc document
	if len(bytes.TrimSpace(raw)) > 0 {
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(&doc); err != nil {
			return nil, fmt.Errorf("parse: %w", err)
		}
	}
	snap := &snapshot{users: make(map[string]user, len(doc.Users))}
	common := map[Params]int{}
	for i, e := range doc.Users {
		u, err := e.check()
		if err != nil {
			return nil, fmt.Errorf("users[%d]: %w", i, err)
		}
		if _, dup := snap.users[e.Name]; dup {
			return nil, fmt.Errorf("users[%d]: %q is listed twice", i, e.Name)
		}
		snap.users[e.Name] = u
		common[u.hash.p]++
	}
	p := DefaultParams
	for q, n := range common {
		if n > common[p] || (n == common[p] && q.Memory*q.Time > p.Memory*p.Time) {
			p = q
		}
	}
	snap.dummy = dummyHash(p)
	return snap, nil
}

// dummyHash is a hash of a random secret with parameters p.
func dummyHash(p Params) hash {
	salt, key := make([]byte, p.SaltLen), make([]byte, p.KeyLen)
	_, _ = rand.Read(salt)
	_, _ = rand.Read(key)
	return hash{p: p, salt: salt, key: key}
}

func (e Entry) check() (user, error) {
	if !validName.MatchString(e.Name) {
		return user{}, fmt.Errorf("name %q: 1 to 64 letters, digits or ._@- starting with a letter or digit", e.Name)
	}
	h, err := parseHash(e.PasswordHash)
	if err != nil {
		return user{}, fmt.Errorf("%s: password_hash: %w", e.Name, err)
	}
	if len(e.Groups) > maxGroups {
		return user{}, fmt.Errorf("%s: more than %d groups", e.Name, maxGroups)
	}
	for _, g := range e.Groups {
		if g == "" || !printable(g) {
			return user{}, fmt.Errorf("%s: group %q is empty, longer than %d bytes or not printable", e.Name, g, maxTextBytes)
		}
	}
	for _, s := range []string{e.DisplayName, e.Email} {
		if !printable(s) {
			return user{}, fmt.Errorf("%s: display_name or email is longer than %d bytes or not printable", e.Name, maxTextBytes)
		}
	}
	groups := slices.Compact(slices.Sorted(slices.Values(e.Groups)))
	name := e.DisplayName
	if name == "" {
		name = e.Name
	}
	return user{person: identity.Person{Subject: e.Name, Name: name, Email: e.Email, Groups: groups}, hash: h}, nil
}

func printable(s string) bool {
	if len(s) > maxTextBytes || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

func clonePerson(p identity.Person) identity.Person {
	p.Groups = slices.Clone(p.Groups)
	return p
}
