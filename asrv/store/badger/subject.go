package badger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/asrv/store"
)

// Revoking everything acting for a person (RevokeSubject).
//
// The revocation first writes the person's mark, revoked/<len><subject>
// (the time of the revocation, until `until`), in a transaction of its own.
// Every transaction that stores a code or token of a person reads that key,
// so one racing with the mark conflicts and its retry sees it; one that
// committed before is found by the sweep that follows, which reads every
// code and token (there is no index by person: a revocation is a rare
// operator's act, and a scan also finds the tokens stored before this
// version) and ends those of the person in batches.

const badgerPrefixRevoked = "revoked/"

// badgerRevokedSubject is the value of a person's mark.
type badgerRevokedSubject struct {
	At time.Time `json:"at"`
}

// badgerSubjectAllowed is asrv.ErrSubjectRevoked when rec acts for a person
// whose tokens were revoked after rec's grant began. It reads the person's
// mark within txn, so a concurrent revocation conflicts with it.
func (s *Store) badgerSubjectAllowed(txn *badger.Txn, rec *store.Record) error {
	sub := rec.Session.GetSubject()
	if sub == "" {
		return nil
	}
	item, err := txn.Get(badgerIndexBase(badgerPrefixRevoked, sub))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	if item.ExpiresAt() != 0 && item.ExpiresAt() <= uint64(s.now().Unix()) {
		return nil
	}
	var mark badgerRevokedSubject
	if err := item.Value(func(b []byte) error { return json.Unmarshal(b, &mark) }); err != nil {
		// Unreadable: refuse, the safe answer for a revocation.
		return fmt.Errorf("%w: %q (unreadable mark)", asrv.ErrSubjectRevoked, sub)
	}
	if asrv.SubjectRevokedAt(rec.Session.AuthTime, mark.At) {
		return fmt.Errorf("%w: %q at %s", asrv.ErrSubjectRevoked, sub, mark.At.Format(time.RFC3339Nano))
	}
	return nil
}

// RevokeSubject implements asrv.TokenStore: the person's mark, then a sweep
// of every code and token.
func (s *Store) RevokeSubject(ctx context.Context, subject string, until time.Time) (asrv.SubjectRevocation, error) {
	var out asrv.SubjectRevocation
	if !store.ValidID(subject) {
		return out, fmt.Errorf("asrv: revoke subject: invalid subject")
	}
	at := s.now().UTC()
	if !until.After(at) {
		until = at.Add(time.Minute)
	}
	mark := badgerIndexBase(badgerPrefixRevoked, subject)
	err := s.update(ctx, func(txn *writeTxn, _ bool) error {
		exp := badgerExpiresAt(until)
		if item, err := txn.Get(mark); err == nil {
			exp = max(exp, item.ExpiresAt())
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		val, err := json.Marshal(badgerRevokedSubject{At: at})
		if err != nil {
			return err
		}
		e := badger.NewEntry(mark, val)
		e.ExpiresAt = exp
		return txn.SetEntry(e)
	})
	if err != nil {
		return out, fmt.Errorf("asrv: revoke subject %q: %w", subject, err)
	}
	for _, kind := range []badgerKind{badgerKindCode, badgerKindPKCE, badgerKindAccess, badgerKindRefresh} {
		keys, err := s.subjectKeys(ctx, kind, subject)
		if err != nil {
			return out, fmt.Errorf("asrv: revoke subject %q: %w", subject, err)
		}
		for len(keys) > 0 {
			batch := keys[:min(len(keys), badgerSweepBatch)]
			keys = keys[len(batch):]
			n := 0
			err := s.update(ctx, func(txn *writeTxn, _ bool) error {
				n = 0
				for _, k := range batch {
					ended, err := s.endSubjectToken(txn, kind, k, subject)
					if err != nil {
						return err
					}
					if ended {
						n++
					}
				}
				return nil
			})
			if err != nil {
				return out, fmt.Errorf("asrv: revoke subject %q: %w", subject, err)
			}
			switch kind {
			case badgerKindCode:
				out.Codes += n
			case badgerKindAccess:
				out.AccessTokens += n
			case badgerKindRefresh:
				out.RefreshTokens += n
			}
		}
	}
	return out, nil
}

// subjectKeys lists the keys of kind's live records acting for subject
// (refresh tokens: the active ones and those in their rotation grace).
func (s *Store) subjectKeys(ctx context.Context, kind badgerKind, subject string) ([][]byte, error) {
	var keys [][]byte
	// The session's sub as the record's JSON spells it: a cheap filter
	// before decoding.
	needle, err := json.Marshal(map[string]string{"sub": subject})
	if err != nil {
		return nil, err
	}
	needle = bytes.TrimSuffix(bytes.TrimPrefix(needle, []byte("{")), []byte("}"))
	err = s.view(ctx, func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.Prefix = []byte(kind.prefix)
		it := txn.NewIterator(o)
		defer it.Close()
		for it.Seek(o.Prefix); it.ValidForPrefix(o.Prefix); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			var match bool
			err := item.Value(func(v []byte) error {
				if !bytes.Contains(v, needle) {
					return nil
				}
				rec, err := store.DecodeRecord(v)
				if err != nil {
					return nil // unreadable: never served
				}
				match = s.endable(kind, rec, subject)
				return nil
			})
			if err != nil {
				return err
			}
			if match {
				keys = append(keys, item.KeyCopy(nil))
			}
		}
		return nil
	})
	return keys, err
}

// endable tells whether rec is a live record of subject that a revocation
// ends.
func (s *Store) endable(kind badgerKind, rec *store.Record, subject string) bool {
	if rec.Session.GetSubject() != subject {
		return false
	}
	if exp := rec.Session.GetExpiresAt(kind.typ); !exp.IsZero() && !s.now().Before(exp) {
		return false
	}
	// A rotated refresh token is ended too: it loses its grace period.
	return kind != badgerKindRefresh || rec.Endable()
}

// endSubjectToken ends the record at key if it (still) acts for subject:
// a refresh token is made inactive, anything else deleted. It reports
// whether that ended something usable.
func (s *Store) endSubjectToken(txn *writeTxn, kind badgerKind, key []byte, subject string) (bool, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	rec, err := badgerItemRecord(item)
	if err != nil || !s.endable(kind, rec, subject) {
		return false, nil
	}
	if kind == badgerKindRefresh {
		// Only a token not yet rotated counts as ended.
		wasActive := !rec.Inactive
		rec.Inactive, rec.RotatedAt = true, time.Time{}
		return wasActive, badgerRewriteRecord(txn, key, rec, item.ExpiresAt())
	}
	// A redeemed code goes too, but only one not yet redeemed counts.
	return !rec.Inactive, badgerDeleteRecord(txn, key, rec)
}
