package audit

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// FileSink writes records as JSON lines to a file, rotating it by size.
//
// Rotation is built in (lumberjack is not in go.sum): when the next record
// would take the file past the size limit, the file is synced, closed and
// renamed to <name>-<UTC timestamp><ext> next to it (e.g.
// audit-2026-11-23T18-43-00.123456789.jsonl), a new file is started, and the
// oldest backups beyond maxBackups are removed. A record is never split
// across files; a single record larger than the limit gets a file of its
// own. Files and backups are created with mode 0600 (the directory 0700).
// The file is synced at most once a second while writing, on rotation and
// on Close.
type FileSink struct {
	path       string
	maxBytes   int64
	maxBackups int

	mu       sync.Mutex
	f        *os.File
	size     int64
	lastSync time.Time
	dirty    bool
	closed   bool
	buf      []byte
	now      func() time.Time
}

// DefaultMaxSizeMB is the rotation size used when maxSizeMB <= 0.
const DefaultMaxSizeMB = 100

const fileSyncInterval = time.Second

// NewFileSink opens (appending to) or creates the JSON-lines file at path,
// rotating it when it would exceed maxSizeMB megabytes (<= 0: 100) and
// keeping at most maxBackups rotated files (<= 0: keep all — audit data is
// not deleted unless asked).
func NewFileSink(path string, maxSizeMB, maxBackups int) (*FileSink, error) {
	if maxSizeMB <= 0 {
		maxSizeMB = DefaultMaxSizeMB
	}
	return newFileSink(path, int64(maxSizeMB)<<20, maxBackups)
}

func newFileSink(path string, maxBytes int64, maxBackups int) (*FileSink, error) {
	if path == "" {
		return nil, errors.New("audit: file sink: empty path")
	}
	s := &FileSink{path: path, maxBytes: maxBytes, maxBackups: maxBackups, now: time.Now}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit: file sink: %w", err)
	}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *FileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit: file sink: %w", err)
	}
	// An existing file may have been created with a wider mode.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("audit: file sink: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit: file sink: %w", err)
	}
	s.f, s.size, s.lastSync = f, st.Size(), s.now()
	return nil
}

var _ LineSink = (*FileSink)(nil)

// Write appends recs, one JSON object per line.
func (s *FileSink) Write(ctx context.Context, recs []Record) error {
	return s.WriteLines(ctx, recs, nil)
}

// WriteLines is Write with the records' lines already encoded (nil lines:
// none are, each is encoded here).
func (s *FileSink) WriteLines(ctx context.Context, recs []Record, lines [][]byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := CheckLines(recs, lines); err != nil {
		return fmt.Errorf("audit: file sink: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("audit: file sink: closed")
	}
	if s.f == nil { // a failed rotation left no file open: try again
		if err := s.open(); err != nil {
			return err
		}
	}
	var errs []error
	s.buf = s.buf[:0]
	for i := range recs {
		line, err := LineOf(recs, lines, i)
		if err != nil {
			errs = append(errs, fmt.Errorf("audit: file sink: %w", err))
			continue
		}
		n := int64(len(line) + 1)
		if s.size+int64(len(s.buf))+n > s.maxBytes && s.size+int64(len(s.buf)) > 0 {
			if err := s.writeBuf(); err != nil {
				return errors.Join(append(errs, err)...)
			}
			if err := s.rotate(); err != nil {
				return errors.Join(append(errs, err)...)
			}
		}
		s.buf = append(s.buf, line...)
		s.buf = append(s.buf, '\n')
	}
	if err := s.writeBuf(); err != nil {
		errs = append(errs, err)
	}
	if s.dirty && s.now().Sub(s.lastSync) >= fileSyncInterval {
		if err := s.sync(); err != nil {
			errs = append(errs, err)
		}
	}
	if cap(s.buf) > 4<<20 {
		s.buf = nil // do not keep a huge buffer around after a burst
	}
	return errors.Join(errs...)
}

func (s *FileSink) writeBuf() error {
	if len(s.buf) == 0 {
		return nil
	}
	n, err := s.f.Write(s.buf)
	s.size += int64(n)
	s.dirty = true
	s.buf = s.buf[:0]
	if err != nil {
		return fmt.Errorf("audit: file sink: write: %w", err)
	}
	return nil
}

func (s *FileSink) sync() error {
	s.lastSync = s.now()
	s.dirty = false
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("audit: file sink: sync: %w", err)
	}
	return nil
}

const backupTimeFormat = "2006-01-02T15-04-05.000000000"

func (s *FileSink) backupName(t time.Time) string {
	dir, base := filepath.Split(s.path)
	ext := filepath.Ext(base)
	stem := strings.TrimSuffix(base, ext)
	return filepath.Join(dir, stem+"-"+t.UTC().Format(backupTimeFormat)+ext)
}

// rotate syncs and closes the current file, renames it to a timestamped
// backup, opens a fresh file and prunes old backups.
func (s *FileSink) rotate() error {
	serr := s.f.Sync()
	cerr := s.f.Close()
	s.f = nil
	if err := errors.Join(serr, cerr); err != nil {
		// Keep writing to the same file rather than losing records.
		if oerr := s.open(); oerr != nil {
			return errors.Join(err, oerr)
		}
		return fmt.Errorf("audit: file sink: rotate: %w", err)
	}
	t := s.now()
	name := s.backupName(t)
	for i := 0; ; i++ { // never overwrite a backup
		if _, err := os.Lstat(name); errors.Is(err, fs.ErrNotExist) {
			break
		}
		t = t.Add(time.Nanosecond)
		name = s.backupName(t)
		if i > 1000 {
			break
		}
	}
	rerr := os.Rename(s.path, name)
	if err := s.open(); err != nil {
		return errors.Join(rerr, err)
	}
	s.dirty = false
	if rerr != nil {
		return fmt.Errorf("audit: file sink: rotate: %w", rerr)
	}
	if err := s.prune(); err != nil {
		return err
	}
	return nil
}

// Backups lists the rotated files, oldest first.
func (s *FileSink) Backups() ([]string, error) {
	dir, base := filepath.Split(s.path)
	if dir == "" {
		dir = "."
	}
	ext := filepath.Ext(base)
	stem := strings.TrimSuffix(base, ext)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: file sink: %w", err)
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(n, stem+"-") || !strings.HasSuffix(n, ext) {
			continue
		}
		ts := strings.TrimSuffix(strings.TrimPrefix(n, stem+"-"), ext)
		if _, err := time.Parse(backupTimeFormat, ts); err != nil {
			continue
		}
		out = append(out, filepath.Join(dir, n))
	}
	sort.Strings(out) // the timestamp format sorts chronologically
	return out, nil
}

func (s *FileSink) prune() error {
	if s.maxBackups <= 0 {
		return nil
	}
	backups, err := s.Backups()
	if err != nil {
		return err
	}
	var errs []error
	for len(backups) > s.maxBackups {
		if err := os.Remove(backups[0]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("audit: file sink: prune: %w", err))
		}
		backups = backups[1:]
	}
	return errors.Join(errs...)
}

// Close syncs and closes the file. It is idempotent.
func (s *FileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.f == nil {
		return nil
	}
	serr := s.f.Sync()
	cerr := s.f.Close()
	s.f = nil
	if err := errors.Join(serr, cerr); err != nil {
		return fmt.Errorf("audit: file sink: close: %w", err)
	}
	return nil
}
