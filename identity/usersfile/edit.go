package usersfile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	yaml "go.yaml.in/yaml/v3"
)

// ErrExists: the name is already in the users file.
var ErrExists = errors.New("the user is already in the users file")

// MinPasswordLen is the shortest password NewEntry hashes.
const MinPasswordLen = 8

// NewEntry makes the entry for a new person: password hashed with p.
func NewEntry(name string, groups []string, password []byte, p Params) (Entry, error) {
	if len(password) < MinPasswordLen {
		return Entry{}, fmt.Errorf("the password must have at least %d characters", MinPasswordLen)
	}
	h, err := HashPassword(password, p)
	if err != nil {
		return Entry{}, err
	}
	e := Entry{Name: name, PasswordHash: h, Groups: slices.Clone(groups)}
	if _, err := e.check(); err != nil {
		return Entry{}, err
	}
	return e, nil
}

// Marshal renders e as one item of the users list, to paste under users:.
func (e Entry) Marshal() ([]byte, error) {
	return encode([]Entry{e})
}

// Append adds e to the users file at path, creating it (mode 0600) when
// missing, and refuses a name already there (ErrExists). The file keeps
// its comments and mode, is checked as a whole before it is written, and
// is replaced atomically (a running server never reads half of it).
func Append(path string, e Entry) error {
	raw, err := os.ReadFile(path)
	mode := os.FileMode(0o600)
	switch {
	case errors.Is(err, os.ErrNotExist):
		raw = nil
	case err != nil:
		return err
	default:
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
		}
	}
	if len(raw) > 0 {
		snap, err := parse(raw)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if _, dup := snap.users[e.Name]; dup {
			return fmt.Errorf("%w: %s", ErrExists, e.Name)
		}
	}
	out, err := appendEntry(raw, e)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if _, err := parse(out); err != nil {
		return fmt.Errorf("%s: the file would not load after the change: %w", path, err)
	}
	return writeAtomic(path, out, mode)
}

// appendEntry adds e to the users list of the YAML document raw, keeping
// the rest of the document (comments included).
func appendEntry(raw []byte, e Entry) ([]byte, error) {
	var root yaml.Node
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := yaml.Unmarshal(raw, &root); err != nil {
			return nil, err
		}
	}
	if root.Kind == 0 {
		root = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode}}}
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("the file is not a YAML mapping with a users list")
	}
	m := root.Content[0]
	var list *yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "users" {
			list = m.Content[i+1]
		}
	}
	if list == nil {
		list = &yaml.Node{Kind: yaml.SequenceNode}
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "users"}, list)
	}
	if list.Kind == yaml.ScalarNode && list.Tag == "!!null" {
		*list = yaml.Node{Kind: yaml.SequenceNode}
	}
	if list.Kind != yaml.SequenceNode {
		return nil, errors.New("users is not a list")
	}
	var item yaml.Node
	if err := item.Encode(e); err != nil {
		return nil, err
	}
	list.Style = 0
	list.Content = append(list.Content, &item)
	return encode(&root)
}

func encode(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// writeAtomic replaces path with data: a synced temporary file in the same
// directory, renamed over it.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
