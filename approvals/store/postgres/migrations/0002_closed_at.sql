-- When an approval closed, for Prune: NULL while it is open. Rows closed
-- before this column existed take their doc's closed_at.
ALTER TABLE approvals ADD COLUMN closed_at timestamptz;
UPDATE approvals SET closed_at = (doc->>'closed_at')::timestamptz
	WHERE status NOT IN ('pending', 'granted') AND doc ? 'closed_at';
CREATE INDEX approvals_closed ON approvals (closed_at) WHERE closed_at IS NOT NULL;
