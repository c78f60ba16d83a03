-- The authorization server's store: registered clients, codes and tokens
-- (by signature only, never the raw value), client-assertion JTIs (by hash).
-- Identifiers use the "C" collation: byte order, as the Badger store lists
-- them, whatever the database's locale.

CREATE TABLE asrv_clients (
    id   text COLLATE "C" PRIMARY KEY,
    -- The asrv.Client as JSON: secrets only as hashes.
    doc  json NOT NULL
);

-- kind: 'code' authorization code, 'pkce' PKCE request, 'at' access token,
-- 'rt' refresh token. request is the storedRequest encoding (no secrets, no
-- raw tokens); inactive marks an invalidated code or a rotated/revoked
-- refresh token, kept until it expires so reuse is detected. Deleting a
-- client deletes its tokens.
CREATE TABLE asrv_tokens (
    kind        text COLLATE "C" NOT NULL CHECK (kind IN ('code', 'pkce', 'at', 'rt')),
    sig         text COLLATE "C" NOT NULL,
    request_id  text COLLATE "C" NOT NULL,
    client_id   text COLLATE "C" NOT NULL REFERENCES asrv_clients (id) ON DELETE CASCADE,
    inactive    boolean NOT NULL DEFAULT false,
    expires_at  timestamptz,
    request     json NOT NULL,
    PRIMARY KEY (kind, sig)
);
CREATE INDEX asrv_tokens_request ON asrv_tokens (request_id, kind);
CREATE INDEX asrv_tokens_client ON asrv_tokens (client_id);
CREATE INDEX asrv_tokens_expiry ON asrv_tokens (expires_at) WHERE expires_at IS NOT NULL;

-- Client-assertion JTIs seen, by SHA-256, until they expire.
CREATE TABLE asrv_jtis (
    hash        bytea PRIMARY KEY,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX asrv_jtis_expiry ON asrv_jtis (expires_at);
