-- The app that signed the push a row came from (the authenticated appKey of the raw envelope; '' when
-- the edge runs with CALLSTREAM_AUTH=off). The edge refuses a body whose appKey differs from the signer
-- (403 app_key_mismatch), so with authentication on, auth_app_key = app_key on every row.
-- No DEFAULT clause: the loader writes the column; rows stored before this migration read ''.

ALTER TABLE {db}.cdrs{on_cluster} ADD COLUMN IF NOT EXISTS auth_app_key LowCardinality(String) AFTER app_key;
ALTER TABLE {db}.call_events{on_cluster} ADD COLUMN IF NOT EXISTS auth_app_key LowCardinality(String) AFTER app_key;
ALTER TABLE {db}.number_status{on_cluster} ADD COLUMN IF NOT EXISTS auth_app_key LowCardinality(String) AFTER app_key;
