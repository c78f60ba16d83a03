-- Revoking everything acting for a person (RevokeSubject). subject is the
-- person a code or token acts for (the session's sub; NULL for a machine
-- client's), filled in for the rows stored before this migration, and
-- indexed so a revocation finds them without reading every row.
-- asrv_revoked_subjects marks each revoked person until expires_at: a code
-- or token of a grant that began (the session's auth_time) no later than
-- revoked_at is refused.

ALTER TABLE asrv_tokens ADD COLUMN subject text COLLATE "C";
UPDATE asrv_tokens SET subject = NULLIF(request -> 'session' ->> 'sub', '');
CREATE INDEX asrv_tokens_subject ON asrv_tokens (subject) WHERE subject IS NOT NULL;

CREATE TABLE asrv_revoked_subjects (
    subject     text COLLATE "C" PRIMARY KEY,
    revoked_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX asrv_revoked_subjects_expiry ON asrv_revoked_subjects (expires_at);
