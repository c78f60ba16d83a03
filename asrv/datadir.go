package asrv

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// TokenSecretFile is the name, in the data dir, of the key that MACs opaque
// tokens. Tokens stay valid across restarts only with the same key.
const TokenSecretFile = "token-secret"

// LoadOrCreateTokenSecret returns the 32-byte token secret kept in dataDir,
// creating it (mode 0600, dir 0700) on first use. A secret file readable by
// others is refused.
func LoadOrCreateTokenSecret(dataDir string) ([]byte, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(dataDir, TokenSecretFile)
	secret, err := readSecretFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		fresh := make([]byte, 32)
		if _, err := rand.Read(fresh); err != nil {
			return nil, fmt.Errorf("generate token secret: %w", err)
		}
		if err := writeSecretFile(path, fresh); err != nil {
			return nil, fmt.Errorf("write token secret: %w", err)
		}
		secret, err = readSecretFile(path) // a concurrent creator may have won
	}
	if err != nil {
		return nil, fmt.Errorf("token secret: %w", err)
	}
	if len(secret) != 32 {
		return nil, fmt.Errorf("token secret %s: %d bytes, want 32", path, len(secret))
	}
	return secret, nil
}

// ReadTokenSecret reads a token secret file as LoadOrCreateTokenSecret
// keeps it (32 bytes, mode 0600): the AS's, copied to gateway replicas that
// introspect on its shared store.
func ReadTokenSecret(path string) ([]byte, error) {
	secret, err := readSecretFile(path)
	if err != nil {
		return nil, fmt.Errorf("token secret: %w", err)
	}
	if len(secret) != 32 {
		return nil, fmt.Errorf("token secret %s: %d bytes, want 32", path, len(secret))
	}
	return secret, nil
}

func readSecretFile(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by others (mode %v); chmod 600 it", path, info.Mode().Perm())
	}
	return os.ReadFile(path)
}

// writeSecretFile creates path with data, mode 0600, durably and without
// ever replacing an existing file.
func writeSecretFile(path string, data []byte) error {
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
	// Link fails if the file appeared meanwhile, so a concurrent creator's
	// secret is never replaced.
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		// No hard links on this filesystem: rename, if still absent.
		if _, statErr := os.Lstat(path); statErr != nil {
			if err := os.Rename(tmp.Name(), path); err != nil {
				return err
			}
		}
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
