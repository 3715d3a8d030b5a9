-- Leaked-key reports (POST /v1/leaks) and operator-set rate limits per account.

ALTER TABLE accounts ADD COLUMN rpm INTEGER;
ALTER TABLE accounts ADD COLUMN tpm INTEGER;

-- One row per live key found in a report (and revoked because of it). The reported strings
-- themselves are never stored.
CREATE TABLE leak_events (
  id          TEXT PRIMARY KEY,
  key_id      TEXT NOT NULL REFERENCES api_keys(id),
  account_id  TEXT NOT NULL REFERENCES accounts(id),
  url         TEXT,
  source      TEXT,
  reporter    TEXT,
  reported_at TEXT NOT NULL
);
CREATE INDEX leak_events_account ON leak_events(account_id, reported_at);

-- Every report, counted (what came in, from where), whatever it contained.
CREATE TABLE leak_reports (
  id          TEXT PRIMARY KEY,
  items       INTEGER NOT NULL,
  revoked     INTEGER NOT NULL,
  reporter    TEXT,
  reported_at TEXT NOT NULL
);
