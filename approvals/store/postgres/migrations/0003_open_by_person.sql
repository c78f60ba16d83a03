-- The person an approval's call acts for (its doc's sub; '' for none):
-- CountOpen counts one client's open approvals per person, the bound
-- Service.Ask applies, so the open index is by client and person.
ALTER TABLE approvals ADD COLUMN subject text NOT NULL DEFAULT '';
UPDATE approvals SET subject = doc->>'sub' WHERE coalesce(doc->>'sub', '') <> '';
DROP INDEX approvals_open_client;
CREATE INDEX approvals_open_client_subject ON approvals (client_id, subject) WHERE status IN ('pending', 'granted');
