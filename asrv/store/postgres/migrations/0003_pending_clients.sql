-- An unverified client (no trusted software statement) is pending from its
-- registration until the first code or token is issued to it; pending
-- clients are counted apart (a cap) and deleted after a while. NULL: not
-- pending — every client registered before this migration, and every
-- verified one.

ALTER TABLE asrv_clients ADD COLUMN pending_since timestamptz;
CREATE INDEX asrv_clients_pending ON asrv_clients (pending_since) WHERE pending_since IS NOT NULL;
