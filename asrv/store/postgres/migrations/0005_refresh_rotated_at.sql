-- The rotation grace period (asrv.refresh_reuse_grace): rotated_at is when
-- an inactive refresh token was rotated, NULL once its family is revoked
-- (and for every token rotated before this migration, which so gets no
-- grace). A refresh token rotated less than the grace period ago may be
-- presented again by its client.

ALTER TABLE asrv_tokens ADD COLUMN rotated_at timestamptz;
