-- Leaked-key reports (POST /v1/leaks) and operator-set rate limits per account
-- (the port of sqlite/0002_leaks_and_account_limits.sql).

ALTER TABLE accounts ADD COLUMN rpm BIGINT;
ALTER TABLE accounts ADD COLUMN tpm BIGINT;

-- One row per live key found in a report (and revoked because of it). The reported strings
-- themselves are never stored.
CREATE TABLE leak_events (
  id          TEXT COLLATE "C" PRIMARY KEY,
  key_id      TEXT COLLATE "C" NOT NULL REFERENCES api_keys(id),
  account_id  TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
  url         TEXT COLLATE "C",
  source      TEXT COLLATE "C",
  reporter    TEXT COLLATE "C",
  reported_at TEXT COLLATE "C" NOT NULL
);
CREATE INDEX leak_events_account ON leak_events(account_id, reported_at);

-- Every report, counted (what came in, from where), whatever it contained.
CREATE TABLE leak_reports (
  id          TEXT COLLATE "C" PRIMARY KEY,
  items       BIGINT NOT NULL,
  revoked     BIGINT NOT NULL,
  reporter    TEXT COLLATE "C",
  reported_at TEXT COLLATE "C" NOT NULL
);
