-- The policy every replica should run, as the last replica to change it
-- published it: the bundle's bytes as pushed (signature included).
CREATE TABLE pbac_policy_head (
    id           boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq          bigint NOT NULL,
    version      text NOT NULL,
    bundle       bytea NOT NULL,
    source       text NOT NULL,
    published_by text NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now()
);

-- Each running replica's last word: the head it has dealt with, the version
-- it runs, why it refused the head (if it did), when it last said so.
CREATE TABLE pbac_policy_replicas (
    replica text PRIMARY KEY,
    seq     bigint NOT NULL,
    version text NOT NULL,
    refused text NOT NULL DEFAULT '',
    seen_at timestamptz NOT NULL DEFAULT now()
);
