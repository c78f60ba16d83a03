package approvals

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// StateKeyFile is the name, in the data dir, of the key that signs
// requestStates. Replicas that take each other's retries share one file.
const StateKeyFile = "approval-state.key"

// stateKeyLen is the length of a state key in bytes (HMAC-SHA256 key).
const stateKeyLen = 32

// StateKey signs and verifies requestStates. Its zero value is not usable;
// make one with NewStateKey or LoadOrCreateStateKey.
type StateKey struct {
	k []byte
}

// NewStateKey returns a key holding a copy of b, which must be 32 bytes.
func NewStateKey(b []byte) (*StateKey, error) {
	if len(b) != stateKeyLen {
		return nil, fmt.Errorf("approval state key: %d bytes, want %d", len(b), stateKeyLen)
	}
	return &StateKey{k: append([]byte(nil), b...)}, nil
}

// String keeps the key out of logs and error messages.
func (*StateKey) String() string { return "approvals.StateKey(redacted)" }

// GoString keeps the key out of %#v.
func (*StateKey) GoString() string { return "approvals.StateKey(redacted)" }

// LoadOrCreateStateKey returns the key kept in <dataDir>/approval-state.key,
// creating the data dir (0700) and the key (0600) on first use.
func LoadOrCreateStateKey(dataDir string) (*StateKey, error) {
	if dataDir == "" {
		return nil, errors.New("approval state key: no data dir (set --data-dir or PBAC_DATA_DIR)")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("approval state key: create data dir: %w", err)
	}
	return LoadOrCreateStateKeyFile(filepath.Join(dataDir, StateKeyFile))
}

// LoadOrCreateStateKeyFile loads the 32-byte key at path or, when there is
// none, creates one: written to a temporary file beside it (0600), synced,
// then linked into place without replacing a key another process created
// meanwhile, and read back, so concurrent creators end up with one key. A key
// file that group or other may access, or of another length, is refused.
func LoadOrCreateStateKeyFile(path string) (*StateKey, error) {
	k, err := readStateKeyFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	fresh := make([]byte, stateKeyLen)
	if _, err := rand.Read(fresh); err != nil {
		return nil, fmt.Errorf("approval state key: generate: %w", err)
	}
	if err := createKeyFile(path, fresh); err != nil {
		return nil, fmt.Errorf("approval state key %s: create: %w", path, err)
	}
	return readStateKeyFile(path)
}

func readStateKeyFile(path string) (*StateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("approval state key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("approval state key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("approval state key %s: not a regular file", path)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("approval state key %s: permissions %04o allow group/other access; run chmod 600 %s",
			path, fi.Mode().Perm(), path)
	}
	b, err := io.ReadAll(io.LimitReader(f, stateKeyLen+1))
	if err != nil {
		return nil, fmt.Errorf("approval state key %s: read: %w", path, err)
	}
	if len(b) > stateKeyLen {
		return nil, fmt.Errorf("approval state key %s: over %d bytes, want %d", path, stateKeyLen, stateKeyLen)
	}
	k, err := NewStateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return k, nil
}

// createKeyFile writes data to path (mode 0600) durably, never replacing a
// file that exists there.
func createKeyFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
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
	// Link fails when the file appeared meanwhile: the other creator's key
	// stays and is the one read back.
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		// No hard links on this filesystem: rename, if the key is still absent.
		if _, statErr := os.Lstat(path); errors.Is(statErr, fs.ErrNotExist) {
			if err := os.Rename(tmp.Name(), path); err != nil {
				return err
			}
		} else if statErr != nil {
			return statErr
		}
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
