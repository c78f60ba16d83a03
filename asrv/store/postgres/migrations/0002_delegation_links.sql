-- Delegated tokens (RFC 8693) die with their chain. ancestors are the
-- request ids of the grants a delegated access token descends from (its
-- subject token's, that one's subject token's, …), actors the clients of
-- those tokens: revoking any of those grants, or deleting any of those
-- clients, deletes the token too. Empty for every other token.

ALTER TABLE asrv_tokens
    ADD COLUMN ancestors text[] COLLATE "C" NOT NULL DEFAULT '{}',
    ADD COLUMN actors    text[] COLLATE "C" NOT NULL DEFAULT '{}';
CREATE INDEX asrv_tokens_ancestors ON asrv_tokens USING gin (ancestors);
CREATE INDEX asrv_tokens_actors ON asrv_tokens USING gin (actors);
