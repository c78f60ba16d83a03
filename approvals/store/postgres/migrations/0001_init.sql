-- Approvals (approvals.Approval) as JSON, with the columns the store
-- selects and orders by beside it. The arguments are kept apart as bytes:
-- jsonb would re-spell them (whitespace, key order, duplicate keys), and
-- approvers are shown exactly what the call carried. id sorts by bytes, as
-- the Badger store's keys do (it breaks ties between equal created_at).
CREATE TABLE approvals (
	id         text COLLATE "C" PRIMARY KEY,
	status     text NOT NULL,
	binding    text NOT NULL,
	client_id  text NOT NULL,
	created_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL,
	rev        bigint NOT NULL,
	doc        jsonb NOT NULL,
	args       bytea
);

CREATE INDEX approvals_status_created ON approvals (status, created_at DESC, id);
CREATE INDEX approvals_client_created ON approvals (client_id, created_at DESC, id);
CREATE INDEX approvals_binding_created ON approvals (binding, created_at DESC, id);
CREATE INDEX approvals_open_client ON approvals (client_id) WHERE status IN ('pending', 'granted');
CREATE INDEX approvals_open_expiry ON approvals (expires_at) WHERE status IN ('pending', 'granted');
