-- Every policy version activated on the replicas sharing the database,
-- newest last: the whole bundle (tar.gz, signature included when it came
-- signed), how it became active, from where, by whom, when. The newest
-- one is what a replica starts (plugins.Registry.Start); a bounded number
-- is kept.
CREATE TABLE pbac_policy_versions (
    seq     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version text NOT NULL,
    kind    text NOT NULL,
    source  text NOT NULL,
    author  text NOT NULL DEFAULT '',
    at      timestamptz NOT NULL,
    bundle  bytea NOT NULL
);
