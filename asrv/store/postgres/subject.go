package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/asrv/store"
)

// Revoking everything acting for a person (RevokeSubject).
//
// Each person has a transaction-scoped advisory lock, (postgresSubjectLock,
// hashtext(subject)) — the two-key space, apart from the migrations' lock.
// Storing a code or token of a person takes it shared, as the first lock
// of its transaction, and then reads the person's mark; a revocation takes
// it exclusively, writes the mark, and only then deletes. So a store that
// got the lock first commits before the revocation's statements run and is
// seen by them (READ COMMITTED: each statement sees what committed before
// it began), and one that waited sees the mark. A hash collision only
// makes two people's stores and revocations queue behind each other.

// postgresSubjectLock is the advisory lock class of people ("pbac" in
// ASCII).
const postgresSubjectLock = 0x70626163

// postgresSubject is the subject column of rec: nil for a machine token.
func postgresSubject(rec *store.Record) *string {
	if sub := rec.Session.GetSubject(); sub != "" {
		return &sub
	}
	return nil
}

// subjectAllowed takes rec's person's lock (shared) within tx and is
// asrv.ErrSubjectRevoked when that person was revoked after rec's grant
// began. Nothing for a machine token.
func (s *Store) subjectAllowed(ctx context.Context, tx pgx.Tx, rec *store.Record) error {
	sub := postgresSubject(rec)
	if sub == nil {
		return nil
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared($1, hashtext($2))`, postgresSubjectLock, *sub); err != nil {
		return err
	}
	var at time.Time
	err := tx.QueryRow(ctx, `SELECT revoked_at FROM asrv_revoked_subjects WHERE subject = $1 AND expires_at > $2`, *sub, s.now()).Scan(&at)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return err
	case asrv.SubjectRevokedAt(rec.Session.AuthTime, at):
		return fmt.Errorf("%w: %q at %s", asrv.ErrSubjectRevoked, *sub, at.Format(time.RFC3339Nano))
	}
	return nil
}

// RevokeSubject implements asrv.TokenStore in one transaction under the
// person's lock (exclusive): the mark, then the codes, PKCE requests and
// access tokens deleted and the refresh tokens made inactive.
func (s *Store) RevokeSubject(ctx context.Context, subject string, until time.Time) (asrv.SubjectRevocation, error) {
	var out asrv.SubjectRevocation
	if !store.ValidID(subject) {
		return out, fmt.Errorf("asrv: revoke subject: invalid subject")
	}
	if err := s.usable(ctx); err != nil {
		return out, fmt.Errorf("asrv: revoke subject %q: %w", subject, err)
	}
	now := s.now()
	if !until.After(now) {
		until = now.Add(time.Minute)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		out = asrv.SubjectRevocation{}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, postgresSubjectLock, subject); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO asrv_revoked_subjects (subject, revoked_at, expires_at) VALUES ($1, $2, $3)
			ON CONFLICT (subject) DO UPDATE SET revoked_at = EXCLUDED.revoked_at,
				expires_at = GREATEST(asrv_revoked_subjects.expires_at, EXCLUDED.expires_at)`, subject, now, until); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `DELETE FROM asrv_tokens WHERE subject = $1 AND kind IN ($2, $3, $4)
			RETURNING kind, (expires_at IS NULL OR expires_at > $5) AND NOT inactive`, subject, postgresKindCode, postgresKindPKCE, postgresKindAccess, now)
		if err != nil {
			return err
		}
		for rows.Next() {
			var (
				kind postgresKind
				live bool
			)
			if err := rows.Scan(&kind, &live); err != nil {
				rows.Close()
				return err
			}
			switch {
			case !live:
			case kind == postgresKindCode:
				out.Codes++
			case kind == postgresKindAccess:
				out.AccessTokens++
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		// Rotated refresh tokens lose their grace period (not counted:
		// they were no longer active), then the active ones are ended.
		if _, err := tx.Exec(ctx, `UPDATE asrv_tokens SET rotated_at = NULL
			WHERE subject = $1 AND kind = $2 AND inactive AND rotated_at IS NOT NULL`, subject, postgresKindRefresh); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE asrv_tokens SET inactive = true
			WHERE subject = $1 AND kind = $2 AND NOT inactive AND (expires_at IS NULL OR expires_at > $3)`, subject, postgresKindRefresh, now)
		if err != nil {
			return err
		}
		out.RefreshTokens = int(tag.RowsAffected())
		return nil
	})
	if err != nil {
		return asrv.SubjectRevocation{}, fmt.Errorf("asrv: revoke subject %q: %w", subject, err)
	}
	return out, nil
}
